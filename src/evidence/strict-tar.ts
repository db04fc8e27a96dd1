/**
 * Reads an evidence bundle's tar strictly, so that any changed byte shows: each header's
 * checksum, the padding after each member (zeros), and the end (zero blocks, nothing
 * after). Only what the bundle writer makes is accepted: ustar regular files.
 */
export interface TarMember {
  name: string;
  data: Buffer;
}

export class TarProblem extends Error {
  constructor(
    /** The member the problem is found at (or `archive`). */
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

const BLOCK = 512;

export function readStrictTar(archive: Buffer): TarMember[] {
  const members: TarMember[] = [];
  let offset = 0;
  const where = (): string => (members.length > 0 ? `the member after ${members.at(-1)?.name}` : 'the first member');
  while (true) {
    if (offset + BLOCK > archive.length) throw new TarProblem('archive', `cut short in ${where()}`);
    const header = archive.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break;
    const name = field(header, 0, 100);
    const label = name || where();
    const expected = Number.parseInt(field(header, 148, 8).trim() || 'x', 8);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
    if (sum !== expected) throw new TarProblem(label, `its tar header is corrupt (checksum) in ${where()}`);
    if (header.toString('latin1', 257, 263) !== 'ustar\0') throw new TarProblem(label, 'not a ustar header');
    const type = header[156];
    if (type !== 0x30 && type !== 0) throw new TarProblem(label, `unexpected member type ${String(type)}`);
    const prefix = field(header, 345, 155);
    const full = prefix ? `${prefix}/${name}` : name;
    const size = Number.parseInt(field(header, 124, 12).trim() || 'x', 8);
    if (!Number.isSafeInteger(size)) throw new TarProblem(full, 'its tar header has no size');
    const start = offset + BLOCK;
    const end = start + size;
    const padded = start + Math.ceil(size / BLOCK) * BLOCK;
    if (padded > archive.length) throw new TarProblem(full, 'cut short');
    if (!archive.subarray(end, padded).every((b) => b === 0))
      throw new TarProblem(full, 'the padding after it is not zero');
    members.push({ name: full, data: Buffer.from(archive.subarray(start, end)) });
    offset = padded;
  }
  if (!archive.subarray(offset).every((b) => b === 0))
    throw new TarProblem('archive', `bytes after the end of the archive (after ${members.at(-1)?.name ?? 'nothing'})`);
  if (archive.length - offset < 2 * BLOCK) throw new TarProblem('archive', 'the end-of-archive blocks are missing');
  return members;
}

function field(header: Buffer, start: number, length: number): string {
  const raw = header.subarray(start, start + length);
  const nul = raw.indexOf(0);
  return raw.toString('utf8', 0, nul === -1 ? length : nul);
}
