import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { decisionDraft, type Decision, type Receipt } from '../receipts/receipt.js';
import { appendReceipt, receiptsNewestFirst, type ReceiptStore } from '../receipts/receipt-store.js';
import {
  baseContent,
  clearBaselines,
  copyBaselines,
  findConflicts,
  recordBaselines,
} from '../workspace/accept-baseline.js';
import { mergeWithHost, type MergeOutcome } from '../workspace/three-way-merge.js';
import { newTempPrefix, planAccept, type AcceptResult, type Flag } from '../workspace/accept-changes.js';
import { markTemps, removeStaleTemps, unmarkTemps } from '../workspace/accept-temps.js';
import { readControlPlane } from '../workspace/control-plane.js';
import { changePatch, matchesPaths, type ChangePatch } from '../workspace/change-patch.js';
import { countChanges, diffLayers, type LayerChange, type LayerEntry } from '../workspace/overlay/layer-diff.js';
import {
  adoptLayer,
  checkCheckpointName,
  checkpoint as freezeLayer,
  findLayer,
  forgetChangeCounts,
  fork as forkLayers,
  openLayerStack,
  peekLayerStack,
  restore as dropLayers,
  type ChangeCounts,
  type FrozenLayer,
  type LayerStack,
  verifyLayers,
} from '../workspace/overlay/layer-stack.js';
import { purgeInBackground } from '../_internal/remove-trees.js';
import { trashDirOf } from '../workspace/overlay/layer-trash.js';
import { cellDir, openCell, readCell, removeCellDir } from './cell-store.js';
import { checkCellName } from './cell-name.js';
import { copyBranchRecord, landBranch, readBranchRecord, type LandReport } from './branch-cell.js';
import { openTransaction, type CellTransaction } from './cell-transaction.js';
import { parseTurnRef, pruneTurns, resolveTurn, type TurnRef } from './turn-checkpoints.js';

/** Which cell a decision is about, and who asks (agentcell's argv, for the receipt). */
export interface CellRef {
  paths: AgentcellPaths;
  cell: string;
  workspace: string;
  command: string[];
}

export interface FlaggedChange extends LayerChange {
  /** Why accept refuses this change (without --force, or at all), or flags it for review. */
  flagged?: Flag;
}

/** The cell's pending changes, each flagged where accept would refuse it or asks for review. Reads only. */
export async function cellDiff(ref: CellRef): Promise<FlaggedChange[]> {
  const dir = cellDir(ref.paths, ref.cell);
  if (!readCell(ref.paths, ref.cell) || !existsSync(join(dir, 'layers'))) return [];
  const sources = new Map<string, LayerEntry>();
  const stats = new Map<string, Stats | undefined>();
  const stack = peekLayerStack(dir);
  const changes = await diffLayers(stack, ref.workspace, { sources, stats });
  const check = planAccept({
    workspace: ref.workspace,
    changes,
    sourceOf: (path) => sources.get(path),
    force: false,
    knownStats: stats,
    conflicts: conflictsOf(stack, ref.workspace, changes, stats),
  });
  const flags = new Map<string, Flag>();
  for (const { path, tier, reason } of [...check.flagged, ...check.refused]) flags.set(path, { tier, reason });
  return changes.map((c) => (flags.has(c.path) ? { ...c, flagged: flags.get(c.path)! } : c));
}

/** The pending changes as unified diffs (`diff --patch`), limited to `paths` when given. Reads only. */
export async function cellPatch(ref: CellRef, paths: readonly string[] = []): Promise<ChangePatch[]> {
  const dir = cellDir(ref.paths, ref.cell);
  if (!readCell(ref.paths, ref.cell) || !existsSync(join(dir, 'layers'))) return [];
  const sources = new Map<string, LayerEntry>();
  const changes = await diffLayers(peekLayerStack(dir), ref.workspace, { sources });
  return changes
    .filter((c) => paths.length === 0 || matchesPaths(c.path, paths))
    .flatMap((c) => changePatch(c, ref.workspace, sources.get(c.path)?.path) ?? []);
}

/**
 * The changes `accept PATH… --exclude PATH…` applies: those under a named path and not
 * under an excluded one, with the new directories above them (a file can't land without
 * its parent).
 */
function selectChanges(
  changes: readonly LayerChange[],
  paths: readonly string[],
  exclude: readonly string[],
): LayerChange[] {
  if (paths.length === 0 && exclude.length === 0) return [...changes];
  const chosen = changes.filter(
    (c) => (paths.length === 0 || matchesPaths(c.path, paths)) && !matchesPaths(c.path, exclude),
  );
  const needed = new Set(chosen.map((c) => c.path));
  for (const c of chosen)
    for (let i = c.path.indexOf('/'); i !== -1; i = c.path.indexOf('/', i + 1)) needed.add(c.path.slice(0, i));
  return changes.filter((c) => needed.has(c.path) && (c.change !== 'deleted' || chosen.includes(c)));
}

/** Three-way merges of the conflicting files the cell modified, each from the host's content at run start. */
function mergeConflicts(
  stack: LayerStack,
  workspace: string,
  changes: readonly LayerChange[],
  conflicts: ReadonlyMap<string, string>,
  sources: ReadonlyMap<string, LayerEntry>,
): MergeOutcome[] {
  const live = stack.layers.map((l) => l.id);
  const conflicting = changes.filter((c) => conflicts.has(c.path));
  if (conflicting.length === 0) return [];
  const scratch = mkdtempSync(join(tmpdir(), 'agentcell-merge-'));
  return conflicting
    .map((c, i): MergeOutcome => {
      const base = baseContent(stack.cellDir, live, c.path);
      const cellFile = sources.get(c.path)?.path;
      if (c.change !== 'modified' || cellFile === undefined)
        return { path: c.path, merged: false, reason: `the cell ${c.change === 'deleted' ? 'deleted' : 'created'} it` };
      if (base === undefined)
        return {
          path: c.path,
          merged: false,
          reason: "its content at run start wasn't kept (large, or changed during the run)",
        };
      const baseFile = join(scratch, `base-${i}`);
      writeFileSync(baseFile, base, { mode: 0o600 });
      return mergeWithHost({ scratchDir: scratch, workspace, path: c.path, base: baseFile, cellFile });
    })
    .map((m) => ({ ...m, scratch }));
}

function mergedEntry(merged: readonly MergeOutcome[], path: string): LayerEntry | undefined {
  const m = merged.find((o) => o.path === path);
  return m?.merged ? { path: m.file, stats: lstatSync(m.file) } : undefined;
}

function removeMergeScratch(merges: readonly (MergeOutcome & { scratch?: string })[]): void {
  const dir = merges[0]?.scratch;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}

function conflictsOf(
  stack: LayerStack,
  workspace: string,
  changes: readonly LayerChange[],
  stats: ReadonlyMap<string, Stats | undefined>,
): Map<string, string> {
  return findConflicts(
    stack.cellDir,
    stack.layers.map((l) => l.id),
    workspace,
    changes.map((c) => c.path),
    stats,
  );
}

export interface AcceptReport extends AcceptResult {
  receipt?: Receipt;
  dryRun: boolean;
  /** A partial accept: how many changes it left pending in the cell. */
  pending?: number;
  /** `--merge`: the paths merged with a host edit, and how many conflict blocks each holds. */
  merged?: { path: string; conflicts: number }[];
  /** A branch cell: its branch as landed in the host repo by a whole accept (src/cell/branch-cell.ts). */
  landed?: LandReport;
}

/**
 * Applies the cell's changes to the workspace and empties the cell. Refuses, changing
 * nothing, when any change is unsafe or touches the control plane, or when the last run
 * failed; `force` applies control-plane changes and a failed run's changes, and skips
 * (never applies) what is unsafe.
 */
export interface AcceptOptions {
  force: boolean;
  dryRun: boolean;
  /** Only these paths (and what is under them); the rest stays pending in the cell. */
  paths?: readonly string[];
  /** Not these paths (nor what is under them); they stay pending. */
  exclude?: readonly string[];
  /** Merge host edits made since the run with the cell's changes, three ways, instead of refusing them. */
  merge?: boolean;
}

export async function acceptCell(ref: CellRef, options: AcceptOptions): Promise<AcceptReport> {
  const dir = cellDir(ref.paths, ref.cell);
  return withCell(ref, options.dryRun, async (tx, stack) => {
    const sources = new Map<string, LayerEntry>();
    const stats = new Map<string, Stats | undefined>();
    const all = await diffLayers(stack, ref.workspace, { sources, stats });
    const changes = selectChanges(all, options.paths ?? [], options.exclude ?? []);
    const partial = changes.length < all.length;
    const failed = undecidedRuns(dir).find((r) => r.exitCode !== 0);
    if (!options.force && failed)
      throw new AgentcellError(
        'ACCEPT_REFUSED',
        `run ${failed.id} (${failed.command.join(' ')}) ${failed.status === 'interrupted' ? 'was interrupted' : `exited ${String(failed.exitCode)}`}; review with agentcell diff, then accept --force or restore`,
      );
    const conflicting = conflictsOf(stack, ref.workspace, changes, stats);
    const merges =
      options.merge && !options.force ? mergeConflicts(stack, ref.workspace, changes, conflicting, sources) : [];
    const merged = merges.filter((m) => m.merged);
    const plan = planAccept({
      workspace: ref.workspace,
      changes,
      sourceOf: (path) => mergedEntry(merged, path) ?? sources.get(path),
      force: options.force,
      knownStats: stats,
      controlPlane: readControlPlane(ref.workspace),
      conflicts: new Map([...conflicting].filter(([path]) => !merged.some((m) => m.path === path))),
    });
    const conflicts = plan.refused.filter((r) => r.tier === 'conflict');
    if (conflicts.length > 0) {
      removeMergeScratch(merges);
      const unmerged = new Map(merges.flatMap((m) => (m.merged ? [] : [[m.path, m.reason] as const])));
      throw new AgentcellError(
        'ACCEPT_CONFLICT',
        `accept refused, nothing applied: the host changed ${conflicts.length} path(s) the cell also changed:\n${conflicts.map((r) => `  ${r.path}: ${r.reason}${unmerged.has(r.path) ? ` (no merge: ${unmerged.get(r.path)})` : ''}`).join('\n')}\nKeep the host's version (agentcell restore), ${options.merge ? '' : 'merge both with accept --merge, '}or overwrite it with accept --force.`,
      );
    }
    const mergeReport = merged.map((m) => ({ path: m.path, conflicts: m.conflicts }));
    if (plan.refused.length > 0 && !options.force)
      throw new AgentcellError(
        'ACCEPT_REFUSED',
        `accept refused, nothing applied:\n${plan.refused.map((r) => `  ${r.path}: ${r.reason}`).join('\n')}\nReview, then accept --force (unsafe entries are still never applied) or restore.`,
      );
    if (options.dryRun || !tx) {
      removeMergeScratch(merges);
      return {
        applied: plan.applied,
        refused: plan.refused,
        flagged: plan.flagged,
        dryRun: true,
        ...(partial ? { pending: all.length - changes.length } : {}),
        ...(options.merge ? { merged: mergeReport } : {}),
      };
    }
    removeStaleTemps(dir, ref.workspace);
    const startedAt = new Date().toISOString();
    // What accept replaces or deletes in the workspace goes to the trash too (see SetAside).
    const setAside = join(trashDirOf(dir), `accept-${randomBytes(4).toString('hex')}`);
    mkdirSync(setAside);
    const tempPrefix = newTempPrefix();
    markTemps(dir, tempPrefix, plan.tempDirs());
    const { failed: notWritten, ...result } = await plan
      .apply({ setAside, tempPrefix })
      .finally(() => removeMergeScratch(merges));
    if (notWritten.length > 0) {
      // Nothing is lost: the cell keeps every change (those applied now show as no change).
      forgetChangeCounts(stack);
      removeStaleTemps(dir, ref.workspace);
      purgeInBackground([setAside]);
      throw new AgentcellError(
        'ACCEPT_INTERRUPTED',
        `the workspace changed while accept ran; ${notWritten.length} path(s) were not written:\n${notWritten.map((f) => `  ${f.path}: ${f.reason}`).join('\n')}\nThe cell keeps its changes: run agentcell accept again.`,
      );
    }
    unmarkTemps(dir);
    const before = topLayer(stack);
    if (partial) {
      // The layers stay: what was applied now matches the workspace (no longer a change),
      // and the rest is still pending, with its baselines.
      forgetChangeCounts(stack);
      const receipt = await decide(tx, 'accepted', ref, startedAt, countChanges(result.applied), before, before, {
        scope: result.applied.map((c) => c.path),
      });
      purgeInBackground([setAside]);
      return {
        ...result,
        dryRun: false,
        pending: all.length - changes.length,
        ...(options.merge ? { merged: mergeReport } : {}),
        ...(receipt ? { receipt } : {}),
      };
    }
    const blobs = clearBaselines(dir);
    const { trashed } = dropLayers(stack);
    const receipt = await decide(tx, 'accepted', ref, startedAt, countChanges(result.applied), before);
    purgeInBackground([...trashed, ...blobs, setAside]);
    // After the receipt: the changes are in the cell's checkout whatever landing says, and a later accept lands again.
    const landed = readBranchRecord(ref.paths, ref.cell) ? landBranch(ref.paths, ref.cell) : undefined;
    return {
      ...result,
      dryRun: false,
      ...(landed ? { landed } : {}),
      ...(options.merge ? { merged: mergeReport } : {}),
      ...(receipt ? { receipt } : {}),
    };
  });
}

export interface RestoreReport {
  dropped: FrozenLayer[];
  /**
   * What the dropped layers changed, as counted when each was frozen (a run's layer: its
   * receipt's counts), summed: a path that two dropped layers change counts twice.
   */
  changes: ChangeCounts;
  /** A dry run's list of the paths the restore would put back as the layers below have them. */
  paths?: LayerChange[];
  /** `restore --to turn:N`: the turn checkpoint that becomes the top layer, and the changes it holds. */
  turn?: RestoredTurn;
  receipt?: Receipt;
  dryRun: boolean;
}

export interface RestoredTurn {
  run: string;
  turn: number;
  at: string;
  contentHash: string;
  changes: LayerChange[];
  /** The layer it became (not on a dry run). */
  layer?: FrozenLayer;
}

/**
 * Drops the cell's changes (all of them, or those above checkpoint `to`): renames, and a
 * receipt from the counts the dropped layers recorded, so neither grows with the changes.
 * `to` may name a turn checkpoint (`turn:N`, `turn:N@RUN`): see restoreToTurn.
 */
export async function restoreCell(ref: CellRef, options: { to?: string; dryRun: boolean }): Promise<RestoreReport> {
  const turnRef = options.to === undefined ? undefined : parseTurnRef(options.to);
  if (turnRef) return restoreToTurn(ref, turnRef, options.dryRun);
  return withCell(ref, options.dryRun, async (tx, stack) => {
    const keep = options.to === undefined ? [] : stack.layers.slice(0, findLayer(stack.layers, options.to) + 1);
    const dropped = stack.layers.slice(keep.length);
    const changes = await droppedChanges(stack, dropped, ref.workspace);
    if (options.dryRun || !tx) {
      // Levels 0 (upper) to the newest kept layer's, exclusive, are dropped.
      const droppedLevels = 1 + stack.layers.length - keep.length;
      const deciders = new Map<string, number>();
      const paths = (await diffLayers(stack, ref.workspace, { deciders })).filter(
        (c) => (deciders.get(c.path) ?? Infinity) < droppedLevels,
      );
      return { dropped, changes, paths, dryRun: true };
    }
    removeStaleTemps(cellDir(ref.paths, ref.cell), ref.workspace);
    const startedAt = new Date().toISOString();
    const top = topLayer(stack);
    const { trashed } = dropLayers(stack, options.to === undefined ? {} : { to: options.to });
    const blobs = options.to === undefined ? clearBaselines(stack.cellDir) : [];
    const receipt = await decide(tx, 'restored', ref, startedAt, changes, top, keep.at(-1)?.id ?? null);
    purgeInBackground([...trashed, ...blobs]);
    return { dropped, changes, dryRun: false, ...(receipt ? { receipt } : {}) };
  });
}

/**
 * `restore --to turn:N`: drops the run's layer and everything above it (as `restore --to`
 * the checkpoint the run started on), then makes the run's checkpoint of turn N, verified
 * against its signed hash, the new top layer, named `turnN.RUN`. The run's other turn
 * checkpoints go with its layer. Refused while the run goes on (it holds the cell).
 */
async function restoreToTurn(ref: CellRef, turnRef: TurnRef, dryRun: boolean): Promise<RestoreReport> {
  return withCell(ref, dryRun, async (tx, stack) => {
    const target = resolveTurn(stack, turnRef);
    const droppedLevels = 1 + stack.layers.length - target.keep.length;
    const deciders = new Map<string, number>();
    const paths = (await diffLayers(stack, ref.workspace, { deciders })).filter(
      (c) => (deciders.get(c.path) ?? Infinity) < droppedLevels,
    );
    // What the turn's layer holds over the kept ones: the changes pending after the restore.
    const turnDeciders = new Map<string, number>();
    const turnChanges = (
      await diffLayers({ ...stack, layers: target.keep, upper: target.dir }, ref.workspace, {
        deciders: turnDeciders,
      })
    ).filter((c) => turnDeciders.get(c.path) === 0);
    const dropped = stack.layers.slice(target.keep.length);
    const turn: RestoredTurn = {
      run: target.run.id,
      turn: target.record.turn,
      at: target.record.at,
      contentHash: target.record.contentHash,
      changes: turnChanges,
    };
    // A turn restore diffs anyway (the turn's own changes), so its report lists the dropped paths too.
    const changes = countChanges(paths);
    if (dryRun || !tx) return { dropped, changes, paths, turn, dryRun: true };
    removeStaleTemps(cellDir(ref.paths, ref.cell), ref.workspace);
    const startedAt = new Date().toISOString();
    const top = topLayer(stack);
    const keptTop = target.keep.at(-1)?.id;
    const restored = dropLayers(stack, keptTop === undefined ? {} : { to: keptTop });
    const blobs = keptTop === undefined ? clearBaselines(stack.cellDir) : [];
    const adopted = adoptLayer(restored.stack, target.dir, {
      name: target.layerName,
      policyHash: target.run.policy.hash,
      contentHash: target.record.contentHash,
    });
    // Accept's conflict check: the host's side of the turn's paths, as of the run's start.
    recordBaselines(stack.cellDir, {
      layer: adopted.layer.id,
      liveLayers: adopted.stack.layers.map((l) => l.id),
      runStartedAt: Date.parse(target.run.startedAt),
      workspace: ref.workspace,
      paths: turnChanges.map((c) => c.path),
    });
    const trashed = [...restored.trashed, ...blobs, ...pruneTurns(adopted.stack)];
    const receipt = await decide(tx, 'restored', ref, startedAt, changes, top, adopted.layer.id);
    purgeInBackground(trashed);
    return {
      dropped,
      changes,
      paths,
      turn: { ...turn, layer: adopted.layer },
      dryRun: false,
      ...(receipt ? { receipt } : {}),
    };
  });
}

/**
 * What dropping these layers and the upper one undoes: the counts each layer recorded
 * when it was frozen; a layer frozen without them (an older cell), and a non-empty upper
 * layer, are diffed alone against the workspace, as a run counts its own layer.
 */
async function droppedChanges(
  stack: LayerStack,
  dropped: readonly FrozenLayer[],
  workspace: string,
): Promise<ChangeCounts> {
  const total: ChangeCounts = { added: 0, modified: 0, deleted: 0 };
  const add = (counts: ChangeCounts): void => {
    total.added += counts.added;
    total.modified += counts.modified;
    total.deleted += counts.deleted;
  };
  for (const layer of dropped) add(layer.changes ?? (await layerChanges(stack, layer.dir, workspace)));
  add(await layerChanges(stack, stack.upper, workspace));
  return total;
}

/** What one layer changes in the workspace on its own (nothing for a missing or empty one). */
async function layerChanges(stack: LayerStack, dir: string, workspace: string): Promise<ChangeCounts> {
  let empty: boolean;
  try {
    empty = readdirSync(dir).length === 0;
  } catch {
    empty = true; // a dry run's upper of a cell that never ran
  }
  if (empty) return { added: 0, modified: 0, deleted: 0 };
  return countChanges(await diffLayers({ ...stack, upper: dir, layers: [] }, workspace));
}

/** Freezes the cell's current changes as a named checkpoint. */
export async function checkpointCell(
  ref: CellRef,
  options: { name?: string; policyHash: string; dryRun: boolean },
): Promise<{ layer?: FrozenLayer; dryRun: boolean }> {
  if (options.name !== undefined) checkCheckpointName(options.name); // a dry run refuses it too
  return withCell(ref, options.dryRun, async (tx, stack): Promise<{ layer?: FrozenLayer; dryRun: boolean }> => {
    if (options.dryRun || !tx) return { dryRun: true };
    // Counted now, as a run counts its layer, so that a restore dropping it need not diff it.
    const changes = await layerChanges(stack, stack.upper, ref.workspace);
    const frozen = freezeLayer(stack, {
      policyHash: options.policyHash,
      changes,
      ...(options.name !== undefined ? { name: options.name } : {}),
    });
    return { layer: frozen.layer, dryRun: false };
  });
}

/** At most this many cells from one `fork --count`. */
export const MAX_FORKS = 32;

/** The cells `fork NEW --count N` makes: NEW-1 … NEW-N (without a count, just NEW). */
export function forkNames(base: string, count?: number): string[] {
  if (count === undefined) return [checkCellName(base)];
  if (!Number.isInteger(count) || count < 1 || count > MAX_FORKS)
    throw new AgentcellError('USAGE', `--count ${String(count)}: give a whole number from 1 to ${MAX_FORKS}`);
  return Array.from({ length: count }, (_, i) => checkCellName(`${base}-${i + 1}`));
}

export interface ForkReport {
  /** The new cells, in order. */
  cells: string[];
  /** The source's checkpoint every fork starts at (its top frozen layer; null when it has none). */
  checkpoint: string | null;
  /** Frozen layers each fork shares with the source and its siblings (hard links: no data copied). */
  layers: number;
  /** A branch cell's fork: the branch each fork is a candidate for (docs/branches.md). */
  branch?: string;
  /** The `forked` decision in the source's chain. */
  receipt?: Receipt;
  dryRun: boolean;
}

/**
 * Forks the cell into new cells on the same workspace, all at its current checkpoint:
 * their frozen layers are hard links to the source's (layer-stack.ts `fork`), each
 * records its parent and checkpoint (the siblings relation, `siblingCells`), and a
 * branch cell's forks work on its branch. All or nothing: every name is checked before
 * the first cell is made, and a fork that fails removes the cells it made.
 */
export async function forkCells(
  ref: CellRef,
  names: readonly string[],
  options: { dryRun: boolean },
): Promise<ForkReport> {
  if (new Set(names).size !== names.length) throw new AgentcellError('USAGE', `fork names repeat: ${names.join(', ')}`);
  for (const name of names)
    if (name === ref.cell || readCell(ref.paths, name))
      throw new AgentcellError('FILE_EXISTS', `cell ${name} already exists; pick another name`);
  const branch = readBranchRecord(ref.paths, ref.cell)?.branch;
  return withCell(ref, options.dryRun, async (tx, stack): Promise<ForkReport> => {
    const top = topLayer(stack);
    const report = { cells: [...names], checkpoint: top, layers: stack.layers.length, ...(branch ? { branch } : {}) };
    if (options.dryRun || !tx) return { ...report, dryRun: true };
    const startedAt = new Date().toISOString();
    verifyLayers(stack.layers); // before any new cell exists: a refused fork leaves nothing behind
    const made: string[] = [];
    try {
      for (const name of names) {
        made.push(name);
        openCell(ref.paths, name, ref.workspace, { from: ref.cell, point: { checkpoint: top } });
        forkLayers(stack, cellDir(ref.paths, name));
        copyBaselines(stack.cellDir, cellDir(ref.paths, name));
        copyBranchRecord(ref.paths, ref.cell, name);
      }
    } catch (error) {
      for (const name of made) removeCellDir(ref.paths, name);
      throw error;
    }
    const receipt = await decide(tx, 'forked', ref, startedAt, { added: 0, modified: 0, deleted: 0 }, top, top);
    return { ...report, dryRun: false, ...(receipt ? { receipt } : {}) };
  });
}

/** `fork NEW_CELL`: one fork (see `forkCells`). */
export async function forkCell(
  ref: CellRef,
  newCell: string,
  options: { dryRun: boolean },
): Promise<{ cell: string; layers: number; receipt?: Receipt; dryRun: boolean }> {
  const { cells, layers, receipt, dryRun } = await forkCells(ref, [newCell], options);
  return { cell: cells[0]!, layers, dryRun, ...(receipt ? { receipt } : {}) };
}

/**
 * Runs a decision on a locked cell (a dry run takes no lock and writes nothing; a cell
 * that does not exist yet is empty).
 */
async function withCell<T>(
  ref: CellRef,
  dryRun: boolean,
  action: (tx: CellTransaction | undefined, stack: LayerStack) => Promise<T>,
): Promise<T> {
  const dir = cellDir(ref.paths, ref.cell);
  if (!readCell(ref.paths, ref.cell))
    throw new AgentcellError('CELL_NOT_FOUND', `no cell ${ref.cell} yet: run something in it first (agentcell run)`);
  // A dry run reads the layers as they are: no lock, no directories made, nothing purged.
  if (dryRun) return action(undefined, existsSync(join(dir, 'layers.json')) ? peekLayerStack(dir) : emptyStack(dir));
  const tx = await openTransaction(ref.paths, ref.cell, ref.workspace, ref.command);
  try {
    return await action(tx, openLayerStack(dir));
  } finally {
    tx.release();
  }
}

async function decide(
  tx: CellTransaction,
  decision: Exclude<Decision, 'pending'>,
  ref: CellRef,
  startedAt: string,
  changes: Receipt['changes'],
  before: string | null,
  after: string | null = null,
  extra: { scope?: string[] } = {},
): Promise<Receipt | undefined> {
  const run = latestRun(tx.store);
  if (!run) return undefined; // nothing was ever run in the cell: nothing to decide
  return appendReceipt(
    tx.store,
    decisionDraft(run, {
      decision,
      command: ref.command,
      startedAt,
      endedAt: new Date().toISOString(),
      changes,
      checkpoint: { before, after },
      ...extra,
    }),
  );
}

/** The runs whose changes are still in the cell: those after the last accept or restore. */
export function undecidedRuns(dir: string): Receipt[] {
  const runs: Receipt[] = [];
  for (const receipt of receiptsNewestFirst(dir)) {
    if (receipt.kind === 'decision' && receipt.decision !== 'forked' && receipt.scope === undefined) break;
    if (receipt.kind === 'run') runs.unshift(receipt);
  }
  return runs;
}

function latestRun(store: ReceiptStore): Receipt | undefined {
  for (const receipt of receiptsNewestFirst(store.cellDir)) if (receipt.kind === 'run') return receipt;
  return undefined;
}

function topLayer(stack: LayerStack): string | null {
  return stack.layers.at(-1)?.id ?? null;
}

function emptyStack(dir: string): LayerStack {
  return { cellDir: dir, layers: [], upper: join(dir, 'upper'), work: join(dir, 'work'), merged: join(dir, 'merged') };
}
