import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { AgentcellError } from '../../errors.js';

/** The program that reads xattrs: Node has no xattr API. */
export type XattrReader = 'getfattr' | 'python3';

/**
 * The xattrs a diff reads: the opaque markers (the kernel's and fuse-overlayfs's), and the
 * ones agentcell's layers never carry and a diff refuses. Not `impure`, `origin` or `uuid`,
 * which the kernel sets on every copied-up directory: reading them tripled the output.
 */
export const DIFF_XATTRS: readonly string[] = [
  'user.overlay.opaque',
  'user.overlay.redirect',
  'user.overlay.metacopy',
  'user.overlay.whiteout',
  'user.fuseoverlayfs.opaque',
];

/** Absolute path -> xattr name -> raw value, for every entry carrying one of {@link DIFF_XATTRS}. */
export type OverlayXattrs = Map<string, Map<string, Buffer>>;

/**
 * Reads the `user.overlay.*` xattrs of every entry under the given layer roots with
 * one process for all of them: `getfattr -R` (package `attr`, about 2 ms) when it is
 * installed, else one python3 walk (about 20 ms). Entries that cannot be read (a
 * directory the agent made mode 000) are skipped.
 */
export async function readOverlayXattrs(
  roots: readonly string[],
  reader?: XattrReader,
  /** false: the roots themselves only, none of what is below them. */
  recursive = true,
): Promise<OverlayXattrs> {
  if (roots.length === 0) return new Map();
  const chosen = reader ?? defaultReader();
  if (!chosen)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      'reading overlay layers needs getfattr or python3; install one: sudo apt-get install attr',
    );
  if (chosen === 'getfattr') {
    const { stdout } = await capture(
      'getfattr',
      [
        ...(recursive ? ['-R'] : []),
        '-P',
        '--absolute-names',
        '-m',
        `^(${DIFF_XATTRS.join('|').replaceAll('.', '\\.')})$`,
        '-d',
        '-e',
        'hex',
        '--',
        ...roots,
      ],
      [0, 1], // 1: some entry could not be read; the rest of the output is valid
    );
    return parseGetfattr(stdout);
  }
  const { stdout } = await capture(
    'python3',
    ['-c', PYTHON_WALK, DIFF_XATTRS.join(','), recursive ? 'walk' : 'roots', ...roots],
    [0],
  );
  return parsePythonWalk(stdout);
}

let cachedReader: XattrReader | null | undefined;

function defaultReader(): XattrReader | undefined {
  if (cachedReader === undefined) {
    cachedReader = onPath('getfattr') ? 'getfattr' : onPath('python3') ? 'python3' : null;
  }
  return cachedReader ?? undefined;
}

function onPath(name: string): boolean {
  for (const dir of (process.env['PATH'] ?? '/usr/bin:/bin').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/**
 * getfattr's output: blocks of `# file: PATH` then `name=0xHEX` lines. In PATH,
 * control characters and backslashes are written as `\ooo` octal escapes.
 */
export function parseGetfattr(output: Buffer): OverlayXattrs {
  const result: OverlayXattrs = new Map();
  let current: Map<string, Buffer> | undefined;
  let start = 0;
  while (start < output.length) {
    let end = output.indexOf(0x0a, start);
    if (end < 0) end = output.length;
    const line = output.subarray(start, end);
    start = end + 1;
    if (line.length === 0) continue;
    const prefix = '# file: ';
    if (line.subarray(0, prefix.length).toString('latin1') === prefix) {
      current = new Map();
      result.set(unescapeOctal(line.subarray(prefix.length)).toString('utf8'), current);
      continue;
    }
    if (!current) continue;
    const eq = line.indexOf(0x3d); // '='; absent when the value is empty
    const name = unescapeOctal(eq < 0 ? line : line.subarray(0, eq)).toString('utf8');
    const value = eq < 0 ? '' : line.subarray(eq + 1).toString('latin1');
    current.set(name, value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex') : Buffer.from(value, 'latin1'));
  }
  return result;
}

function unescapeOctal(bytes: Buffer): Buffer {
  if (!bytes.includes(0x5c)) return bytes;
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    const digits = bytes.subarray(i + 1, i + 4).toString('latin1');
    if (byte === 0x5c && /^[0-3][0-7]{2}$/.test(digits)) {
      out.push(parseInt(digits, 8));
      i += 3;
    } else out.push(byte);
  }
  return Buffer.from(out);
}

/** One JSON line per entry with overlay xattrs; paths and values hex-encoded (any bytes are safe). */
const PYTHON_WALK = `
import json, os, sys
wanted = set(sys.argv[1].split(','))
def show(path):
    try:
        names = [n for n in os.listxattr(path, follow_symlinks=False) if n in wanted]
    except OSError:
        return
    if names:
        values = {}
        for n in names:
            try:
                values[n] = os.getxattr(path, n, follow_symlinks=False).hex()
            except OSError:
                pass
        print(json.dumps({'p': os.fsencode(path).hex(), 'x': values}))
for root in sys.argv[3:]:
    show(root)
    if sys.argv[2] != 'walk':
        continue
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            show(os.path.join(top, name))
`;

export function parsePythonWalk(output: Buffer): OverlayXattrs {
  const result: OverlayXattrs = new Map();
  for (const line of output.toString('utf8').split('\n')) {
    if (!line) continue;
    const entry = JSON.parse(line) as { p: string; x: Record<string, string> };
    const values = new Map<string, Buffer>();
    for (const [name, hex] of Object.entries(entry.x)) values.set(name, Buffer.from(hex, 'hex'));
    result.set(Buffer.from(entry.p, 'hex').toString('utf8'), values);
  }
  return result;
}

function capture(command: string, args: string[], okStatus: number[]): Promise<{ stdout: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (cause) =>
      reject(new AgentcellError('BACKEND_UNAVAILABLE', `cannot run ${command}: ${cause.message}`, { cause })),
    );
    child.on('close', (status) => {
      if (status !== null && okStatus.includes(status)) resolve({ stdout: Buffer.concat(out) });
      else
        reject(
          new AgentcellError(
            'INTERNAL',
            `${command} failed reading overlay layers (exit ${status}): ${Buffer.concat(err).toString('utf8').trim()}`,
          ),
        );
    });
  });
}
