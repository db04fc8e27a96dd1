import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { loopTurns, walkLayer } from './layer-walk.js';

/** Files up to this size are hashed by content; larger ones by size and mtime (a checkpoint stays cheap). */
export const CONTENT_HASH_LIMIT = 1024 * 1024;

/**
 * An entry changed this recently (ms) when its stat hash is taken may change again within
 * the same timestamp tick without its ctime moving: the stat hash is then not recorded.
 * Covers the kernel's timestamp tick and the coarsest timestamps of a Linux filesystem.
 */
const SETTLE_MS = 2_500;

/** What a frozen layer's checks compare (layers.json keeps both). */
export interface LayerFingerprint {
  /** sha256 of the layer's listing and content: what the layer is. */
  contentHash: string;
  /**
   * sha256 of every entry's inode, size, mode and change times: while it is the same, no
   * entry was written, replaced, renamed, chmodded or had its xattrs changed, since each of
   * those moves the entry's ctime to the present, which only setting the clock back
   * (root) can undo. Undefined when an entry changed within SETTLE_MS.
   */
  statHash?: string;
}

/**
 * A frozen layer's fingerprint, recorded at checkpoint and checked before a restore or
 * fork keeps the layer (verified restores). `contentHash`: sha256 over the sorted
 * listing of every entry's path, type, mode, size, device number (whiteouts) or link
 * target, and the sha256 of each file's content up to CONTENT_HASH_LIMIT (above it, or
 * where the host can't read it, the file's mtime stands in). Extended attributes (the
 * opaque-dir mark) are not covered by it; they are by `statHash` (a change moves the ctime).
 * The layer's own directory is not covered: freezing renames it.
 */
export function layerFingerprint(
  dir: string,
  now = Date.now(),
  entries?: string[],
  digests?: FileDigests,
): LayerFingerprint {
  const content = new ContentHash(digests);
  const stats = new StatHash(now, entries);
  for (const step of walkLayer(dir, plainLstat)) {
    if (step.s === undefined) {
      content.unlistable(step.path);
      stats.unlistable(step.path);
    } else {
      stats.add(step.path, step.s);
      content.add(step.path, step.full, step.s);
    }
  }
  const statHash = stats.digest();
  return { contentHash: content.digest(), ...(statHash !== undefined ? { statHash } : {}) };
}

/**
 * File digests by identity (device, inode, size, mtime), for layers whose files are never
 * written once made, as turn copies that hard-link the files they share: each is read once.
 */
export type FileDigests = Map<string, string>;

/** The content hash alone (see layerFingerprint); `digests` only for files nothing writes again. */
export function layerContentHash(dir: string, digests?: FileDigests): string {
  return layerFingerprint(dir, Date.now(), undefined, digests).contentHash;
}

/**
 * layerContentHash, letting the event loop run as it walks: a turn's copy is hashed while the
 * gateway relays the agent's answer on the same loop, which a walk of a 30,000-file copy held
 * ~0.5 s (the same hash: the same walk and lines).
 */
export async function layerContentHashYielding(dir: string, digests?: FileDigests): Promise<string> {
  const content = new ContentHash(digests);
  const loopTurn = loopTurns();
  for (const step of walkLayer(dir, plainLstat)) {
    if (step.s === undefined) content.unlistable(step.path);
    else content.add(step.path, step.full, step.s);
    const next = loopTurn();
    if (next) await next;
  }
  return content.digest();
}

/** Plain (not bigint) stats, cheaper to make: see StatHash.add. */
const plainLstat = (full: string): Stats => lstatSync(full);

/** The content half of a fingerprint, an entry at a time in the walk's order. */
class ContentHash {
  readonly #hash = createHash('sha256');
  readonly #buffer = Buffer.allocUnsafe(64 * 1024);
  readonly #digests: FileDigests | undefined;

  constructor(digests: FileDigests | undefined) {
    this.#digests = digests;
  }

  add(path: string, full: string, s: Stats): void {
    let extra = '';
    if (s.isSymbolicLink()) extra = readlinkSync(full);
    else if (typeOf(s) === 'o') extra = `rdev=${s.rdev}`;
    else if (s.isFile())
      extra = knownDigest(
        this.#digests,
        s,
        () => fileDigest(full, s.size, this.#buffer) ?? `mtime=${lstatSync(full, { bigint: true }).mtimeNs}`,
      );
    this.#hash.update(`${JSON.stringify(path)}\t${typeOf(s)}\t${(s.mode & 0o7777).toString(8)}\t${s.size}\t${extra}\n`);
  }

  unlistable(path: string): void {
    this.#hash.update(`${JSON.stringify(path)}\tunlistable\n`);
  }

  digest(): string {
    return `sha256:${this.#hash.digest('hex')}`;
  }
}

/** `digest()` of the file `s` describes, or the one already taken of that file (see FileDigests). */
function knownDigest(digests: FileDigests | undefined, s: Stats, digest: () => string): string {
  const key = `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
  const known = digests?.get(key);
  if (known !== undefined) return known;
  const made = digest();
  digests?.set(key, made);
  return made;
}

/**
 * The stat hash alone, reading no file (see layerFingerprint); undefined when an entry
 * changed just now. `entries`, when given, gets the walk's entries (see statHashOfListed).
 */
export function layerStatHash(dir: string, now = Date.now(), entries?: string[]): string | undefined {
  const stats = new StatHash(now, entries);
  for (const step of walkLayer(dir, plainLstat)) {
    if (step.s === undefined) stats.unlistable(step.path);
    else stats.add(step.path, step.s);
  }
  return stats.digest();
}

/**
 * The stat hash of a layer taken over the entries a walk found (`entries`, as layerStatHash
 * filled it) instead of a new walk: no directory is read, which is most of a walk's cost.
 * It equals the walk's hash only if every listed entry is there with the inode and times it
 * had, and a directory that gained or lost an entry since has another ctime, so its own line
 * differs; the layer's top directory has no line (freezing renames it), so its names are
 * read and compared. Undefined when an entry is gone, the top differs, or one changed just now.
 */
export function statHashOfListed(dir: string, entries: readonly string[], now = Date.now()): string | undefined {
  const stats = new StatHash(now);
  const top: string[] = [];
  for (const entry of entries) {
    if (entry.startsWith('/')) {
      stats.unlistable(entry.slice(1));
      continue;
    }
    let s: Stats;
    try {
      s = lstatSync(`${dir}/${entry}`);
    } catch {
      return undefined;
    }
    stats.add(entry, s);
    if (!entry.includes('/')) top.push(entry);
  }
  try {
    if (readdirSync(dir).sort().join('\0') !== top.join('\0')) return undefined;
  } catch {
    return undefined;
  }
  return stats.digest();
}

/**
 * Lines hashed in batches, not one native hash update an entry (a fresh process's check of a
 * 2,078-entry layer went from ~32 to ~27 ms, noisy); bounded, so a huge layer holds no big string.
 */
const STAT_LINES_PER_UPDATE = 1024;

class StatHash {
  readonly #hash = createHash('sha256');
  #lines: string[] = [];
  readonly #settledBefore: number;
  #settled = true;
  /** Each entry hashed, in order, an unlistable directory as `/` + its path (no path starts with `/`). */
  readonly #entries: string[] | undefined;

  constructor(now: number, entries?: string[]) {
    this.#settledBefore = now - SETTLE_MS;
    this.#entries = entries;
  }

  /** Plain (not bigint) stats, cheaper to make: the settle window makes sub-microsecond times moot. */
  add(path: string, s: Stats): void {
    if (s.ctimeMs >= this.#settledBefore || s.mtimeMs >= this.#settledBefore) this.#settled = false;
    this.#entries?.push(path);
    this.#line(
      `${JSON.stringify(path)}\t${typeOf(s)}\t${s.mode}\t${s.size}\t${s.dev}:${s.ino}\t${s.mtimeMs}\t${s.ctimeMs}\n`,
    );
  }

  unlistable(path: string): void {
    this.#entries?.push(`/${path}`);
    this.#line(`${JSON.stringify(path)}\tunlistable\n`);
  }

  #line(text: string): void {
    this.#lines.push(text);
    if (this.#lines.length >= STAT_LINES_PER_UPDATE) this.#flush();
  }

  #flush(): void {
    this.#hash.update(this.#lines.join(''));
    this.#lines = [];
  }

  digest(): string | undefined {
    if (!this.#settled) return undefined;
    this.#flush();
    return `sha256:${this.#hash.digest('hex')}`;
  }
}

function typeOf(s: Stats): 'd' | 'l' | 'f' | 'o' {
  return s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : s.isFile() ? 'f' : 'o';
}

function fileDigest(path: string, size: number, buffer: Buffer): string | undefined {
  if (size > CONTENT_HASH_LIMIT) return undefined;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined; // unreadable to the host (a mode the cell set): its mtime stands in
  }
  try {
    const hash = createHash('sha256');
    let n: number;
    while ((n = readSync(fd, buffer, 0, buffer.length, null)) > 0) hash.update(buffer.subarray(0, n));
    return hash.digest('hex');
  } finally {
    closeSync(fd);
  }
}
