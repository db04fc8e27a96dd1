import { lstatSync, rmSync, type Stats } from 'node:fs';
import { join } from 'node:path';
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

const BaselineSchema = z.strictObject({
  version: z.literal(1),
  paths: z.record(
    z.string(),
    z.strictObject({
      /** The frozen layer of the run that recorded it: a baseline whose layer was dropped is void. */
      layer: z.string(),
      host: z.nullable(identity),
      changedDuringRun: z.optional(z.boolean()),
    }),
  ),
});
type BaselineFile = z.infer<typeof BaselineSchema>;

const FILE = 'accept-baseline.json';

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
  for (const path of record.paths) {
    if (state.paths[path]) continue;
    const host = hostIdentity(record.workspace, path, record.hostStats);
    state.paths[path] = {
      layer: record.layer,
      host,
      ...(host && host.ctimeMs > record.runStartedAt ? { changedDuringRun: true } : {}),
    };
  }
  writeStateFile(join(cellDir, FILE), BASELINE_FILE, state, { mode: 0o644 });
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
    const baseline = state.paths[path];
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

/** A decision empties the cell: its baselines go with its layers. */
export function clearBaselines(cellDir: string): void {
  rmSync(join(cellDir, FILE), { force: true });
}

/** A fork keeps the layers' ids, so their baselines hold for it too. */
export function copyBaselines(fromCellDir: string, toCellDir: string): void {
  const state = readStateFile(join(fromCellDir, FILE), BASELINE_FILE);
  if (state) writeStateFile(join(toCellDir, FILE), BASELINE_FILE, state, { mode: 0o644 });
}

function readBaselines(cellDir: string, liveLayers: readonly string[]): BaselineFile {
  const found = readStateFile(join(cellDir, FILE), BASELINE_FILE);
  if (!found) return { version: 1, paths: {} };
  const live = new Set(liveLayers);
  const paths: BaselineFile['paths'] = {};
  for (const [p, b] of Object.entries(found.paths)) if (live.has(b.layer)) paths[p] = b;
  return { version: 1, paths };
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
