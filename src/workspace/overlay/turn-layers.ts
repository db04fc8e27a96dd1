import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { link } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { makeDirs } from '../../_internal/make-dirs.js';
import { cellStateFix, readStateFile, writeStateFile, type StateFileKind } from '../../_internal/state-file.js';
import { layerContentHashYielding, type FileDigests } from './layer-hash.js';
import { loopTurns, walkLayer } from './layer-walk.js';
import { trashDirOf } from './layer-trash.js';

/**
 * Turn checkpoints: the run's live upper layer as it was when the agent sent each LLM
 * request (a turn boundary: it has acted on the previous answer and waits for the
 * next), kept under the cell's state dir next to the layers:
 *
 * ```
 * turns/<run>/turns.json   the run's turns (this schema), rewritten whole after each
 * turns/<run>/0001/        a copy of upper/ at turn 1 (cp -a --reflink=auto), never written again
 * ```
 *
 * A copy costs what the run has written so far, never the workspace; a turn whose upper
 * is unchanged since the previous copy shares that copy. The host only reads the upper
 * while the overlay is mounted. `restore --to turn:N` (cell-decisions.ts) verifies the
 * copy against its recorded hash and renames it into the stack as a frozen layer.
 */
export const TurnRecordSchema = z.strictObject({
  /** 1, 2, 3… in the order the requests started. */
  turn: z.int().check(z.gte(1)),
  /** When the request started: equal to its spy record's `time`. */
  at: z.string(),
  /** The LLM API request that opened the turn (spy's provider, host and path). */
  request: z.strictObject({ provider: z.string(), host: z.string(), path: z.string() }),
  /** The copy's directory name under turns/<run>/ (an earlier turn's when nothing changed since). */
  dir: z.optional(z.string().check(z.regex(/^[0-9]{4}$/))),
  /** layer-hash.ts of the copy as taken. */
  contentHash: z.optional(z.string()),
  /** Bytes of file data in the copy. */
  bytes: z.optional(z.number()),
  /** Why no copy was taken (a cap, or the host could not read the layer). */
  skipped: z.optional(z.string()),
});
export type TurnRecord = z.infer<typeof TurnRecordSchema>;

export const TurnSetSchema = z.strictObject({
  version: z.literal(1),
  run: z.string(),
  turns: z.array(TurnRecordSchema),
});
export type TurnSet = z.infer<typeof TurnSetSchema>;

const TURNS_FILE: StateFileKind<typeof TurnSetSchema> = {
  schema: TurnSetSchema,
  what: "a run's turn checkpoints",
  fix: cellStateFix,
};

/**
 * Per-run bounds on what turn checkpoints cost: past any of them a turn is recorded
 * `skipped` with the reason (timeline, receipt), and the run goes on unaffected.
 */
export const TURN_LIMITS = {
  /** Copies per run (a turn with nothing new shares the previous copy and does not count). */
  maxCopies: 64,
  /** A copy is not taken of an upper layer holding more file data than this. */
  maxLayerBytes: 256 * 1024 ** 2,
  /** All of a run's copies together. */
  maxTotalBytes: 1024 ** 3,
};
export type TurnLimits = typeof TURN_LIMITS;

/** The LLM request that starts a turn, as the gateway saw it. */
export interface TurnStart {
  at: string;
  provider: string;
  host: string;
  path: string;
}

export interface TurnRecorder {
  /**
   * Records a turn: copies the upper unless unchanged or past a cap. Resolves once what
   * changed is copied (the links, the hash and the record follow, while the next turn's copy
   * may start); never rejects.
   */
  take(start: TurnStart): Promise<void>;
  /** The turns so far (after every pending `take` settled). */
  settle(): Promise<TurnRecord[]>;
}

export function turnsDir(cellDir: string): string {
  return join(cellDir, 'turns');
}

export function turnSetDir(cellDir: string, run: string): string {
  return join(turnsDir(cellDir), run);
}

/** A run's turns; undefined when it recorded none. */
export function readTurnSet(cellDir: string, run: string): TurnSet | undefined {
  return readStateFile(join(turnSetDir(cellDir, run), 'turns.json'), TURNS_FILE);
}

/** The runs that have turn checkpoints in this cell. */
export function listTurnRuns(cellDir: string): string[] {
  const dir = turnsDir(cellDir);
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.startsWith('r-')) : [];
}

/**
 * Starts recording a run's turns, in the order their requests started; `onRecord` gets the
 * list after each (the run journals it). A turn's copy is taken in two halves: what changed
 * since the previous copy is copied, one turn at a time, and the answer goes; the hard links
 * of what did not change and the hash follow while the next turn's copy may already start
 * (its links are made from the copy each file was first written to, which is complete).
 */
export function createTurnRecorder(options: {
  cellDir: string;
  upper: string;
  run: string;
  limits?: TurnLimits;
  onRecord?: (turns: TurnRecord[]) => void;
}): TurnRecorder {
  const { cellDir, upper, run, limits = TURN_LIMITS } = options;
  const setDir = turnSetDir(cellDir, run);
  const turns: TurnRecord[] = [];
  let started = 0;
  /** The copies' first halves, one at a time. */
  let copying: Promise<void> = Promise.resolve();
  /** The turns' records, in order (each waits for its copy's second half). */
  let recording: Promise<void> = Promise.resolve();
  let copies = 0;
  let totalBytes = 0;
  /**
   * The last copy: its scan, its dir, its hash once its second half is done (undefined: it
   * failed), and for each of its files the copy it was written to (the others hold links to it).
   */
  let last:
    | { scan: LayerScan; dir: string; bytes: number; hash: Promise<string | undefined>; origins: Map<string, string> }
    | undefined;
  // The copies' files are never written: each is read for its digest once, however many copies link it.
  const digests: FileDigests = new Map();

  /**
   * The first half; resolves, once the answer may go, with the turn's record to come (in an
   * object: an async function resolving to a promise would wait for it).
   */
  const copyTurn = async (base: TurnRecord): Promise<{ record: Promise<TurnRecord> }> => {
    const skip = (why: string): { record: Promise<TurnRecord> } => ({
      record: Promise.resolve({ ...base, skipped: why }),
    });
    let scan: LayerScan;
    try {
      scan = await scanLayer(upper);
    } catch (error) {
      return skip(`the upper layer could not be read: ${(error as Error).message}`);
    }
    const previous = last;
    if (previous && previous.scan.signature === scan.signature)
      return {
        record: previous.hash.then((contentHash) =>
          contentHash === undefined
            ? { ...base, skipped: 'the copy of the previous turn, unchanged since, failed' }
            : { ...base, dir: previous.dir, contentHash, bytes: previous.bytes },
        ),
      };
    // Files unchanged since the last copy are hard-linked (copies are never written): a copy costs the new data.
    const linked = previous ? unchangedFiles(scan, previous.scan) : new Set<string>();
    const newBytes = scan.bytes - [...linked].reduce((sum, path) => sum + (scan.files.get(path)?.size ?? 0), 0);
    if (copies >= limits.maxCopies) return skip(`past ${limits.maxCopies} copies in this run`);
    if (newBytes > limits.maxLayerBytes)
      return skip(`the copy would take ${newBytes} bytes, over ${limits.maxLayerBytes}`);
    if (totalBytes + newBytes > limits.maxTotalBytes)
      return skip(`the run's copies would pass ${limits.maxTotalBytes} bytes`);
    const dir = String(base.turn).padStart(4, '0');
    makeDirs(setDir, 0o700);
    const target = join(setDir, dir);
    const failed =
      linked.size > 0
        ? await copyChanged(upper, target, scan, linked)
        : scan.paths.length === 0
          ? copyEmpty(target)
          : await copyTree(upper, target);
    if (failed !== undefined) {
      moveToTrash(cellDir, [target]);
      return skip(`the upper layer could not be copied: ${failed}`);
    }
    copies += 1;
    totalBytes += newBytes;
    // The links come from copies nothing writes, not from the upper: what the copy holds is
    // fixed now, and the answer may go (30,000 files in the upper held it ~2 s for the links).
    const from = new Map(
      [...scan.files.keys()].map((path) => [path, linked.has(path) ? (previous?.origins.get(path) ?? dir) : dir]),
    );
    const second = (async (): Promise<{ contentHash: string } | { failed: string }> => {
      const unlinked = await linkUnchanged(setDir, target, linked, from);
      if (unlinked !== undefined) return { failed: unlinked };
      try {
        return { contentHash: await layerContentHashYielding(target, digests) };
      } catch (error) {
        return { failed: `its hash: ${(error as Error).message}` };
      }
    })();
    const hash = second.then((r) => ('contentHash' in r ? r.contentHash : undefined));
    last = { scan, dir, bytes: scan.bytes, hash, origins: from };
    const recorded = second.then((r): TurnRecord => {
      if ('contentHash' in r) return { ...base, dir, contentHash: r.contentHash, bytes: scan.bytes };
      // Gone, and later copies may name it as where their files were written: the next turn
      // copies afresh (one begun meanwhile on this copy fails its links too).
      moveToTrash(cellDir, [target]);
      copies -= 1;
      totalBytes -= newBytes;
      last = undefined;
      return { ...base, skipped: `the upper layer could not be copied: ${r.failed}` };
    });
    return { record: recorded };
  };

  const record = (turn: TurnRecord): void => {
    turns.push(turn);
    writeStateFile(join(setDir, 'turns.json'), TURNS_FILE, { version: 1, run, turns }, { durable: false });
    options.onRecord?.([...turns]);
  };

  return {
    take(start) {
      const base: TurnRecord = {
        turn: ++started,
        at: start.at,
        request: { provider: start.provider, host: start.host, path: start.path },
      };
      const copied = copying.then(() => copyTurn(base));
      copying = copied.then(
        () => undefined,
        () => undefined,
      );
      // Every turn gets a record, in order, whatever happened to its copy.
      recording = recording
        .then(() => copied)
        .then(
          (copy) => copy.record,
          (error: unknown): TurnRecord => ({ ...base, skipped: `the copy failed: ${(error as Error).message}` }),
        )
        .then(record)
        .catch(() => undefined);
      return copying;
    },
    async settle() {
      await copying;
      await recording;
      return [...turns];
    },
  };
}

/** Moves turn directories (or whole turn sets) into the cell's trash/, for the next purge. */
export function moveToTrash(cellDir: string, dirs: readonly string[]): string[] {
  const trash = trashDirOf(cellDir);
  makeDirs(trash);
  const moved: string[] = [];
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    const target = join(trash, `turn-${randomBytes(6).toString('hex')}`);
    renameSync(dir, target);
    moved.push(target);
  }
  return moved;
}

interface LayerScan {
  /** Every entry's path, type, size, mode, inode, mtime and ctime: changes whenever the layer does. */
  signature: string;
  bytes: number;
  /** Every entry, parents before children. */
  paths: string[];
  /** Regular files: size, and identity (inode, size, mtime, ctime: a write or chmod changes the ctime). */
  files: Map<string, { size: number; identity: string }>;
}

/**
 * One lstat walk of the layer, cheap next to a copy, so an unchanged upper is not copied
 * again; the event loop runs meanwhile. Throws when a directory can't be listed.
 */
async function scanLayer(dir: string): Promise<LayerScan> {
  const hash = createHash('sha256');
  let bytes = 0;
  const paths: string[] = [];
  const files = new Map<string, { size: number; identity: string }>();
  const loopTurn = loopTurns();
  for (const { path, s } of walkLayer(dir, (full) => lstatSync(full, { bigint: true }))) {
    if (s === undefined) throw new Error(`${path || '.'} can't be listed`);
    const line = `${JSON.stringify(path)}\t${s.mode}\t${s.size}\t${s.ino}\t${s.mtimeNs}\t${s.ctimeNs}`;
    hash.update(`${line}\n`);
    paths.push(path);
    if (s.isFile()) {
      bytes += Number(s.size);
      files.set(path, { size: Number(s.size), identity: line });
    }
    const next = loopTurn();
    if (next) await next;
  }
  return { signature: hash.digest('hex'), bytes, paths, files };
}

/** Regular files whose identity is what it was when the previous copy was taken. */
function unchangedFiles(scan: LayerScan, previous: LayerScan): Set<string> {
  const same = new Set<string>();
  for (const [path, file] of scan.files) if (previous.files.get(path)?.identity === file.identity) same.add(path);
  return same;
}

/**
 * A copy that takes only what changed since the previous one: GNU tar copies every
 * entry but the unchanged files (directories with their opaque-dir xattrs, whiteouts,
 * symlinks, modes, times); linkUnchanged then hard-links those from the previous copy.
 */
async function copyChanged(
  source: string,
  target: string,
  scan: LayerScan,
  unchanged: ReadonlySet<string>,
): Promise<string | undefined> {
  makeDirs(target);
  const list = scan.paths.filter((path) => !unchanged.has(path));
  return list.length === 0 ? undefined : await tarCopy(source, target, list);
}

/** Links taken a batch at a time off the event loop, which serves the run's gateway meanwhile. */
const LINK_BATCH = 64;

/** Links each of `paths` into `target` from the copy under `setDir` that `from` names for it. */
async function linkUnchanged(
  setDir: string,
  target: string,
  paths: ReadonlySet<string>,
  from: ReadonlyMap<string, string>,
): Promise<string | undefined> {
  const list = [...paths];
  try {
    for (let i = 0; i < list.length; i += LINK_BATCH)
      await Promise.all(
        list.slice(i, i + LINK_BATCH).map((path) => link(join(setDir, from.get(path)!, path), join(target, path))),
      );
  } catch (error) {
    return (error as Error).message;
  }
  return undefined;
}

/** `tar -c --no-recursion -T - | tar -x`, both keeping xattrs; the paths go to the first on stdin, NUL-separated. */
function tarCopy(source: string, target: string, paths: readonly string[]): Promise<string | undefined> {
  const xattrs = ['--xattrs', '--xattrs-include=*'];
  const create = spawn('tar', ['-C', source, ...xattrs, '--null', '--no-recursion', '-T', '-', '-cf', '-'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const extract = spawn('tar', ['-C', target, ...xattrs, '--same-permissions', '-xf', '-'], {
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  create.stdout.pipe(extract.stdin);
  create.stdin.end(paths.map((p) => `${p}\0`).join(''));
  const outcome = (child: typeof create | typeof extract, what: string): Promise<string | undefined> =>
    new Promise((resolve) => {
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.once('error', (error) => resolve(`${what}: ${error.message}`));
      child.once('close', (code) =>
        resolve(code === 0 ? undefined : `${what}: ${stderr.trim().slice(0, 300) || `exit ${code}`}`),
      );
    });
  return Promise.all([outcome(create, 'tar -c'), outcome(extract, 'tar -x')]).then(([a, b]) => a ?? b);
}

/**
 * The copy of an empty upper (an agent's first request, before it wrote anything), made
 * without starting a process: the answer waits for it. (The root's own mode and times are
 * not the layer's: a stacked layer's root is never what the cell sees.)
 */
function copyEmpty(target: string): string | undefined {
  try {
    mkdirSync(target, { mode: 0o700 });
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * `cp -a --reflink=auto`: keeps whiteouts (0/0 character devices), the opaque-dir
 * xattrs, modes and times, as fork() copies an upper layer. Resolves the failure, if any.
 */
function copyTree(source: string, target: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const child = spawn('cp', ['-a', '--reflink=auto', '--no-target-directory', source, target], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', (error) => resolve(error.message));
    child.once('close', (code) => resolve(code === 0 ? undefined : stderr.trim().slice(0, 300) || `exit ${code}`));
  });
}
