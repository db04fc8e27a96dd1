import {
  closeSync,
  cpSync,
  existsSync,
  fsyncSync,
  lstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fsyncDir, removeQuietly, tempPathFor } from '../_internal/atomic-file.js';
import { sha256 } from '../_internal/canonical-hash.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { trashDirOf } from './overlay/layer-trash.js';
import * as z from 'zod/mini';
import { cellStateFix, readStateFile, writeStateFile, type StateFileKind } from '../_internal/state-file.js';
import { childPath } from './child-path.js';

/**
 * What each path a cell changed looked like on the host when the run that first changed
 * it (since the last decision) began, so accept can tell a host edit made since from
 * the cell's own change (DESIGN "Landing", invariant 11). Recorded at the end of each
 * run, where the diff is taken: the host entry's identity then, and whether the host
 * changed it while the run ran (its ctime is later than the run's start).
 */
const identity = z.object({
  kind: z.enum(['file', 'dir', 'symlink', 'other']),
  ino: z.number(),
  size: z.number(),
  mtimeMs: z.number(),
  ctimeMs: z.number(),
});
type Identity = z.infer<typeof identity>;

const baseline = z.strictObject({
  /** The frozen layer of the run that recorded it: a baseline whose layer was dropped is void. */
  layer: z.string(),
  host: z.nullable(identity),
  changedDuringRun: z.optional(z.boolean()),
  /** sha256 of the host file's content then, kept in baseline-blobs/ for `accept --merge`. */
  blob: z.optional(z.string()),
  /** Where that content is: a slice of one run's pack (else, as first recorded, the file baseline-blobs/<blob>). */
  pack: z.optional(
    z.strictObject({
      file: z.string().check(z.regex(/^[0-9a-f]+\.pack$/, 'expected a pack file name')),
      offset: z.number(),
      size: z.number(),
    }),
  ),
});
type Baseline = z.infer<typeof baseline>;

/**
 * Version 2 lists the paths: version 1 kept them as an object keyed by path, where a
 * file named `__proto__` can't be a key (JSON parsing drops it) and one named
 * `constructor` found the object's own prototype member. Version 1 is still read.
 */
const BaselineSchema = z.discriminatedUnion('version', [
  z.strictObject({ version: z.literal(1), paths: z.record(z.string(), baseline) }),
  z.strictObject({ version: z.literal(2), paths: z.array(z.strictObject({ path: z.string(), ...baseline.shape })) }),
]);

/** In memory, by path: a Map, never an object keyed by a path the workspace names. */
type Baselines = Map<string, Baseline>;

const FILE = 'accept-baseline.json';
const BLOBS = 'baseline-blobs';
/** Bigger host files get no base copy: `accept --merge` leaves them to --force or restore. */
const MAX_BASE_BYTES = 4 * 1024 * 1024;

/** Damaged, it can't tell a host edit from the cell's own: an error, never "no baseline". */
const BASELINE_FILE: StateFileKind<typeof BaselineSchema> = {
  schema: BaselineSchema,
  what: "accept's record of the host's side of changed paths",
  fix: cellStateFix,
};

/**
 * Records the host's side of a run's changed paths, keeping an older live record of a
 * path (the baseline is from the first run that changed it). `hostStats`: lstats the
 * diff already made, by absolute path.
 */
export function recordBaselines(
  cellDir: string,
  record: {
    layer: string;
    liveLayers: readonly string[];
    runStartedAt: number;
    workspace: string;
    paths: readonly string[];
    hostStats?: ReadonlyMap<string, Stats | undefined>;
  },
): void {
  const state = readBaselines(cellDir, record.liveLayers);
  const pack = new BlobPack(cellDir);
  try {
    for (const path of record.paths) {
      if (state.has(path)) continue;
      const host = hostIdentity(record.workspace, path, record.hostStats);
      const changedDuringRun = host !== null && host.ctimeMs > record.runStartedAt;
      const kept =
        host?.kind === 'file' && !changedDuringRun ? keepBase(pack, record.workspace, path, host) : undefined;
      state.set(path, {
        layer: record.layer,
        host,
        ...(changedDuringRun ? { changedDuringRun: true } : {}),
        ...kept,
      });
    }
  } catch (error) {
    pack.finish(false);
    throw error;
  }
  pack.finish();
  writeBaselines(cellDir, state);
}

/** Paths the host changed since their baseline, each with why; paths without a baseline are not judged. */
export function findConflicts(
  cellDir: string,
  liveLayers: readonly string[],
  workspace: string,
  paths: readonly string[],
  hostStats?: ReadonlyMap<string, Stats | undefined>,
): Map<string, string> {
  const state = readBaselines(cellDir, liveLayers);
  const conflicts = new Map<string, string>();
  for (const path of paths) {
    const baseline = state.get(path);
    if (!baseline) continue;
    if (baseline.changedDuringRun) {
      conflicts.set(path, 'the host changed this path while the run ran');
      continue;
    }
    const now = hostIdentity(workspace, path, hostStats);
    if (!sameEntry(baseline.host, now))
      conflicts.set(
        path,
        baseline.host === null
          ? 'the host created this path since the run'
          : now === null
            ? 'the host deleted this path since the run'
            : 'the host changed this path since the run',
      );
  }
  return conflicts;
}

/**
 * The host's content of a path when the run began (what the cell's change and a host edit
 * since both started from), for a three-way merge; undefined when it wasn't kept (not a
 * regular file then, too big, changed while the run ran, or recorded before blobs existed).
 */
export function baseContent(cellDir: string, liveLayers: readonly string[], path: string): Buffer | undefined {
  const { blob, pack } = readBaselines(cellDir, liveLayers).get(path) ?? {};
  if (blob === undefined) return undefined;
  let content: Buffer;
  try {
    content = pack
      ? readSlice(join(cellDir, BLOBS, pack.file), pack.offset, pack.size)
      : readFileSync(join(cellDir, BLOBS, blob));
  } catch {
    return undefined;
  }
  // Checked, as any state a crash or a hand may have damaged: a wrong base would merge wrongly.
  return sha256(content) === blob ? content : undefined;
}

/**
 * A decision empties the cell: its baselines go with its layers. The blobs are renamed
 * into the cell's trash (a run that changed thousands of files kept as many): returned
 * for the caller to delete after its receipt, with the dropped layers.
 */
export function clearBaselines(cellDir: string): string[] {
  rmSync(join(cellDir, FILE), { force: true });
  const trash = trashDirOf(cellDir);
  const trashed = join(trash, `${BLOBS}-${randomBytes(4).toString('hex')}`);
  makeDirs(trash);
  try {
    renameSync(join(cellDir, BLOBS), trashed);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return [trashed];
}

/** A fork keeps the layers' ids, so their baselines hold for it too. */
export function copyBaselines(fromCellDir: string, toCellDir: string): void {
  const state = readStateFile(join(fromCellDir, FILE), BASELINE_FILE);
  if (state) writeStateFile(join(toCellDir, FILE), BASELINE_FILE, state, { mode: 0o644 });
  if (existsSync(join(fromCellDir, BLOBS)))
    cpSync(join(fromCellDir, BLOBS), join(toCellDir, BLOBS), { recursive: true });
}

/** The live baselines, by path, from either version of the file. */
function readBaselines(cellDir: string, liveLayers: readonly string[]): Baselines {
  const found = readStateFile(join(cellDir, FILE), BASELINE_FILE);
  const live = new Set(liveLayers);
  const state: Baselines = new Map();
  if (!found) return state;
  // A version 1 record can't hold a __proto__ entry: it was never recorded, nor parsed back.
  const entries =
    found.version === 1 ? Object.entries(found.paths) : found.paths.map(({ path, ...b }) => [path, b] as const);
  for (const [path, b] of entries) if (live.has(b.layer)) state.set(path, b);
  return state;
}

/** Always as version 2. */
function writeBaselines(cellDir: string, state: Baselines): void {
  const paths = [...state].map(([path, b]) => ({ path, ...b }));
  writeStateFile(join(cellDir, FILE), BASELINE_FILE, { version: 2, paths }, { mode: 0o644 });
}

/** Adds a host file's content to the run's pack, if it still is the file the run saw. */
function keepBase(
  pack: BlobPack,
  workspace: string,
  path: string,
  seen: Identity,
): Pick<Baseline, 'blob' | 'pack'> | undefined {
  if (seen.size > MAX_BASE_BYTES) return undefined;
  let content: Buffer;
  try {
    content = readFileSync(childPath(workspace, path));
  } catch {
    return undefined;
  }
  if (!sameEntry(seen, hostIdentity(workspace, path))) return undefined; // changed while being read
  return { blob: sha256(content), pack: pack.add(content) };
}

/**
 * The contents one recording keeps, appended to one file as they are read: a run that
 * changed 6,700 files made as many files here, each created and fsynced on its own, and
 * its end took 11 s. Written to a temp name, fsynced once and renamed into place.
 */
class BlobPack {
  readonly file = `${randomBytes(8).toString('hex')}.pack`;
  private fd: number | undefined;
  private temp = '';
  private size = 0;

  constructor(private readonly cellDir: string) {}

  add(content: Buffer): { file: string; offset: number; size: number } {
    if (this.fd === undefined) {
      makeDirs(join(this.cellDir, BLOBS), 0o700);
      this.temp = tempPathFor(join(this.cellDir, BLOBS, this.file));
      this.fd = openSync(this.temp, 'wx', 0o600);
    }
    const at = { file: this.file, offset: this.size, size: content.length };
    for (let done = 0; done < content.length;)
      done += writeSync(this.fd, content, done, content.length - done, this.size + done);
    this.size += content.length;
    return at;
  }

  /** Puts the pack in place (if anything was added), or with `keep` false (a failed recording) removes it. */
  finish(keep = true): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    let placed = false;
    try {
      if (keep) {
        fsyncSync(fd);
        renameSync(this.temp, join(this.cellDir, BLOBS, this.file));
        placed = true;
      }
    } finally {
      closeSync(fd);
      if (!placed) removeQuietly(this.temp);
    }
    if (placed) fsyncDir(join(this.cellDir, BLOBS));
  }
}

function readSlice(file: string, offset: number, size: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(size);
    if (readSync(fd, buffer, 0, size, offset) !== size) throw new Error(`${file} is short`);
    return buffer;
  } finally {
    closeSync(fd);
  }
}

function hostIdentity(
  workspace: string,
  path: string,
  known?: ReadonlyMap<string, Stats | undefined>,
): Identity | null {
  const abs = childPath(workspace, path);
  const stat = known?.has(abs) ? known.get(abs) : lstatOrUndefined(abs);
  if (!stat) return null;
  const kind = stat.isFile() ? 'file' : stat.isDirectory() ? 'dir' : stat.isSymbolicLink() ? 'symlink' : 'other';
  return { kind, ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs };
}

/** A directory's times change with what is in it, which is judged path by path: only its kind counts. */
function sameEntry(a: Identity | null, b: Identity | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.kind !== b.kind) return false;
  if (a.kind === 'dir') return true;
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined; // under a host path that is not a directory
  }
}
