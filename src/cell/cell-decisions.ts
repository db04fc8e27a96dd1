import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { decisionDraft, type Decision, type Receipt } from '../receipts/receipt.js';
import { appendReceipt, receiptsNewestFirst, type ReceiptStore } from '../receipts/receipt-store.js';
import { clearBaselines, copyBaselines, findConflicts } from '../workspace/accept-baseline.js';
import { newTempPrefix, planAccept, type AcceptResult, type Flag } from '../workspace/accept-changes.js';
import { markTemps, removeStaleTemps, unmarkTemps } from '../workspace/accept-temps.js';
import { readControlPlane } from '../workspace/control-plane.js';
import { countChanges, diffLayers, type LayerChange, type LayerEntry } from '../workspace/overlay/layer-diff.js';
import {
  checkCheckpointName,
  checkpoint as freezeLayer,
  findLayer,
  fork as forkLayers,
  openLayerStack,
  peekLayerStack,
  restore as dropLayers,
  type FrozenLayer,
  type LayerStack,
  verifyLayers,
} from '../workspace/overlay/layer-stack.js';
import { purgeInBackground } from '../_internal/remove-trees.js';
import { trashDirOf } from '../workspace/overlay/layer-trash.js';
import { cellDir, openCell, readCell } from './cell-store.js';
import { openTransaction, type CellTransaction } from './cell-transaction.js';

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
}

/**
 * Applies the cell's changes to the workspace and empties the cell. Refuses, changing
 * nothing, when any change is unsafe or touches the control plane, or when the last run
 * failed; `force` applies control-plane changes and a failed run's changes, and skips
 * (never applies) what is unsafe.
 */
export async function acceptCell(ref: CellRef, options: { force: boolean; dryRun: boolean }): Promise<AcceptReport> {
  const dir = cellDir(ref.paths, ref.cell);
  return withCell(ref, options.dryRun, async (tx, stack) => {
    const sources = new Map<string, LayerEntry>();
    const stats = new Map<string, Stats | undefined>();
    const changes = await diffLayers(stack, ref.workspace, { sources, stats });
    const failed = undecidedRuns(dir).find((r) => r.exitCode !== 0);
    if (!options.force && failed)
      throw new AgentcellError(
        'ACCEPT_REFUSED',
        `run ${failed.id} (${failed.command.join(' ')}) ${failed.status === 'interrupted' ? 'was interrupted' : `exited ${String(failed.exitCode)}`}; review with agentcell diff, then accept --force or restore`,
      );
    const plan = planAccept({
      workspace: ref.workspace,
      changes,
      sourceOf: (path) => sources.get(path),
      force: options.force,
      knownStats: stats,
      controlPlane: readControlPlane(ref.workspace),
      conflicts: conflictsOf(stack, ref.workspace, changes, stats),
    });
    const conflicts = plan.refused.filter((r) => r.tier === 'conflict');
    if (conflicts.length > 0)
      throw new AgentcellError(
        'ACCEPT_CONFLICT',
        `accept refused, nothing applied: the host changed ${conflicts.length} path(s) the cell also changed:\n${conflicts.map((r) => `  ${r.path}: ${r.reason}`).join('\n')}\nKeep the host's version (agentcell restore), or overwrite it with accept --force.`,
      );
    if (plan.refused.length > 0 && !options.force)
      throw new AgentcellError(
        'ACCEPT_REFUSED',
        `accept refused, nothing applied:\n${plan.refused.map((r) => `  ${r.path}: ${r.reason}`).join('\n')}\nReview, then accept --force (unsafe entries are still never applied) or restore.`,
      );
    if (options.dryRun || !tx)
      return { applied: plan.applied, refused: plan.refused, flagged: plan.flagged, dryRun: true };
    removeStaleTemps(dir, ref.workspace);
    const startedAt = new Date().toISOString();
    // What accept replaces or deletes in the workspace goes to the trash too (see SetAside).
    const setAside = join(trashDirOf(dir), `accept-${randomBytes(4).toString('hex')}`);
    mkdirSync(setAside);
    const tempPrefix = newTempPrefix();
    markTemps(dir, tempPrefix, plan.tempDirs());
    const { failed: notWritten, ...result } = await plan.apply({ setAside, tempPrefix });
    if (notWritten.length > 0) {
      // Nothing is lost: the cell keeps every change (those applied now show as no change).
      removeStaleTemps(dir, ref.workspace);
      purgeInBackground([setAside]);
      throw new AgentcellError(
        'ACCEPT_INTERRUPTED',
        `the workspace changed while accept ran; ${notWritten.length} path(s) were not written:\n${notWritten.map((f) => `  ${f.path}: ${f.reason}`).join('\n')}\nThe cell keeps its changes: run agentcell accept again.`,
      );
    }
    unmarkTemps(dir);
    clearBaselines(dir);
    const before = topLayer(stack);
    const { trashed } = dropLayers(stack);
    const receipt = await decide(tx, 'accepted', ref, startedAt, countChanges(result.applied), before);
    purgeInBackground([...trashed, setAside]);
    return { ...result, dryRun: false, ...(receipt ? { receipt } : {}) };
  });
}

export interface RestoreReport {
  dropped: FrozenLayer[];
  changes: LayerChange[];
  receipt?: Receipt;
  dryRun: boolean;
}

/** Drops the cell's changes (all of them, or those above checkpoint `to`). O(1): renames only. */
export async function restoreCell(ref: CellRef, options: { to?: string; dryRun: boolean }): Promise<RestoreReport> {
  return withCell(ref, options.dryRun, async (tx, stack) => {
    const keep = options.to === undefined ? [] : stack.layers.slice(0, findLayer(stack.layers, options.to) + 1);
    // Levels 0 (upper) to the newest kept layer's, exclusive, are dropped.
    const droppedLevels = 1 + stack.layers.length - keep.length;
    const deciders = new Map<string, number>();
    const changes = (await diffLayers(stack, ref.workspace, { deciders })).filter(
      (c) => (deciders.get(c.path) ?? Infinity) < droppedLevels,
    );
    const dropped = stack.layers.slice(keep.length);
    if (options.dryRun || !tx) return { dropped, changes, dryRun: true };
    removeStaleTemps(cellDir(ref.paths, ref.cell), ref.workspace);
    const startedAt = new Date().toISOString();
    const top = topLayer(stack);
    const { trashed } = dropLayers(stack, options.to === undefined ? {} : { to: options.to });
    if (options.to === undefined) clearBaselines(stack.cellDir);
    const receipt = await decide(tx, 'restored', ref, startedAt, countChanges(changes), top, keep.at(-1)?.id ?? null);
    purgeInBackground(trashed);
    return { dropped, changes, dryRun: false, ...(receipt ? { receipt } : {}) };
  });
}

/** Freezes the cell's current changes as a named checkpoint. */
export async function checkpointCell(
  ref: CellRef,
  options: { name?: string; policyHash: string; dryRun: boolean },
): Promise<{ layer?: FrozenLayer; dryRun: boolean }> {
  if (options.name !== undefined) checkCheckpointName(options.name); // a dry run refuses it too
  return withCell(ref, options.dryRun, (tx, stack): Promise<{ layer?: FrozenLayer; dryRun: boolean }> => {
    if (options.dryRun || !tx) return Promise.resolve({ dryRun: true });
    const frozen = freezeLayer(stack, {
      policyHash: options.policyHash,
      ...(options.name !== undefined ? { name: options.name } : {}),
    });
    return Promise.resolve({ layer: frozen.layer, dryRun: false });
  });
}

/** Copies the cell's layers into a new cell on the same workspace; records `forked` in the source's chain. */
export async function forkCell(
  ref: CellRef,
  newCell: string,
  options: { dryRun: boolean },
): Promise<{ cell: string; layers: number; receipt?: Receipt; dryRun: boolean }> {
  if (readCell(ref.paths, newCell)) throw new AgentcellError('FILE_EXISTS', `cell ${newCell} already exists`);
  return withCell(ref, options.dryRun, async (tx, stack) => {
    if (options.dryRun || !tx) return { cell: newCell, layers: stack.layers.length, dryRun: true };
    const startedAt = new Date().toISOString();
    verifyLayers(stack.layers); // before the new cell exists: a refused fork leaves nothing behind
    openCell(ref.paths, newCell, ref.workspace, ref.cell);
    forkLayers(stack, cellDir(ref.paths, newCell));
    copyBaselines(stack.cellDir, cellDir(ref.paths, newCell));
    const top = topLayer(stack);
    const receipt = await decide(tx, 'forked', ref, startedAt, { added: 0, modified: 0, deleted: 0 }, top, top);
    return { cell: newCell, layers: stack.layers.length, dryRun: false, ...(receipt ? { receipt } : {}) };
  });
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
    }),
  );
}

/** The runs whose changes are still in the cell: those after the last accept or restore. */
function undecidedRuns(dir: string): Receipt[] {
  const runs: Receipt[] = [];
  for (const receipt of receiptsNewestFirst(dir)) {
    if (receipt.kind === 'decision' && receipt.decision !== 'forked') break;
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
