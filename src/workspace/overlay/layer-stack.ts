import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as z from 'zod/mini';
import { AgentcellError } from '../../errors.js';
import { captureCopy } from './copy-driver.js';
import { purgeInBackground } from '../../_internal/remove-trees.js';
import { trashDirOf } from './layer-trash.js';
import { layerFingerprint, layerStatHash, statHashOfListed } from './layer-hash.js';
import { pruneStatLists, readStatList, saveStatList } from './layer-stat-lists.js';
import { makeDirs } from '../../_internal/make-dirs.js';
import { cellStateFix, readStateFile, writeStateFile, type StateFileKind } from '../../_internal/state-file.js';

/**
 * How the overlay is mounted: the kernel's overlayfs, or fuse-overlayfs where the
 * kernel refuses one in a user namespace (older kernels, a state dir without user
 * xattrs), or no mount at all: a copy per run (copy-driver.ts) where neither works.
 * A cell keeps the driver its layers were written with (layers.json).
 */
export const OVERLAY_DRIVERS = ['kernel', 'fuse-overlayfs', 'copy'] as const;
export type OverlayDriver = (typeof OVERLAY_DRIVERS)[number];

const count = z.int().check(z.gte(0));
const ChangeCountsSchema = z.strictObject({ added: count, modified: count, deleted: count });
/** How many paths a layer adds, modifies and deletes in the workspace (receipts count the same way). */
export type ChangeCounts = z.infer<typeof ChangeCountsSchema>;

/**
 * A cell's workspace layers, kept in the cell's state dir:
 *
 * ```
 * layers/<seq>-<id>/   frozen checkpoints, bottom to top; never written again
 * upper/               the writable layer of the next run
 * work/                overlayfs's scratch dir (same filesystem as upper/)
 * merged/              where the overlay is mounted, inside the cell's namespace only
 * trash/               dropped layers waiting to be deleted in the background
 * layers.json          the list of frozen layers; its atomic rewrite is the commit point
 * ```
 *
 * The host workspace is the lowest layer and is never written here. Checkpoint and
 * restore only rename directories, so both are O(1) in the size of the workspace and
 * of the layers. The caller holds the cell's lock: a run must not be using the stack
 * while it changes.
 */
export const LayerRecordSchema = z.strictObject({
  /** Random hex id; stable for the life of the checkpoint (receipts refer to it). */
  id: z.string().check(z.regex(/^[0-9a-f]+$/)),
  /** Position in the cell's history; never reused, even after a restore. */
  seq: z.int(),
  name: z.optional(z.string()),
  createdAt: z.string(),
  /** Hash of the policy the run that wrote this layer ran under. */
  policyHash: z.string(),
  /** Its content as frozen (layer-hash.ts); a restore or fork checks it before keeping the layer. Absent on older layers. */
  contentHash: z.optional(z.string()),
  /**
   * Its entries' inodes and change times (layer-hash.ts): while they are the same, the
   * content is too, and a check reads no file. Absent when the layer was frozen right
   * after a write, until a check has read the content.
   */
  statHash: z.optional(z.string()),
  /**
   * What the layer changes in the workspace, counted when it was frozen (a run's: its
   * receipt's counts): a restore that drops the layer counts these instead of diffing it.
   * Absent on older layers and on ones frozen without a count.
   */
  changes: z.optional(ChangeCountsSchema),
});
export type LayerRecord = z.infer<typeof LayerRecordSchema>;

export interface FrozenLayer extends LayerRecord {
  /** Absolute path of the layer's directory. */
  dir: string;
}

export interface LayerStack {
  readonly cellDir: string;
  /** Frozen layers, bottom (oldest) to top (newest). */
  readonly layers: readonly FrozenLayer[];
  readonly upper: string;
  readonly work: string;
  readonly merged: string;
  /** How its layers are mounted; undefined only for a cell that has no layers.json yet. */
  readonly driver?: OverlayDriver;
}

export interface CheckpointOptions {
  name?: string;
  policyHash: string;
  /** What the upper layer changes in the workspace (diffLayers of it alone), kept for restore's receipt. */
  changes?: ChangeCounts;
}

export interface RestoreOptions {
  /** Keep layers up to and including this checkpoint (id, name or seq); without it, drop every layer. */
  to?: string;
}

export interface Restored {
  stack: LayerStack;
  /** Frozen layers dropped, bottom to top. The upper layer is always dropped too. */
  dropped: FrozenLayer[];
  /** Directories (now in trash/) that a background process is deleting. */
  trashed: string[];
}

/**
 * Overlayfs takes its options as one page (4096 bytes); each layer costs about 21 of
 * them (`layers/0001-0123abcd:`), and the kernel stacks at most 500 layers.
 */
export const MAX_LAYERS = 128;

const STATE_FILE = 'layers.json';
const FORMAT_VERSION = 1;

const layerDir = z.string().check(z.regex(/^[0-9]+-[0-9a-f]+$/));
const hex = z.string().check(z.regex(/^[0-9a-f]+$/));

const PendingSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('checkpoint'), dir: layerDir }),
  z.strictObject({ op: z.literal('restore'), token: hex, dirs: z.array(layerDir) }),
  z.strictObject({ op: z.literal('fork'), from: z.string() }),
  z.strictObject({ op: z.literal('adopt'), dir: layerDir, from: z.string() }),
]);
type PendingOperation = z.infer<typeof PendingSchema>;

/** What layers.json holds. `pending` is an operation to finish if a crash cut it short. */
export const LayerStackStateSchema = z.strictObject({
  version: z.literal(FORMAT_VERSION),
  nextSeq: z.int().check(z.gte(1)),
  layers: z.array(LayerRecordSchema),
  /** Absent before the first run. */
  driver: z.optional(z.enum(OVERLAY_DRIVERS)),
  pending: z.optional(PendingSchema),
});
type StackState = z.infer<typeof LayerStackStateSchema>;

const LAYERS_FILE: StateFileKind<typeof LayerStackStateSchema> = {
  schema: LayerStackStateSchema,
  what: "the cell's layer list",
  fix: cellStateFix,
};

/**
 * Opens (creating when needed) the layer stack in a cell dir, finishing an interrupted
 * operation. A run passes its `driver`, which a new stack records; an existing one keeps its own.
 */
export function openLayerStack(cellDir: string, driver?: OverlayDriver): LayerStack {
  makeDirs(join(cellDir, 'layers'));
  let state = readState(cellDir);
  if (state.driver === undefined && driver !== undefined) {
    state = { ...state, driver };
    writeState(cellDir, state);
  }
  if (state.pending) {
    finishPending(cellDir, state.pending);
    state = { ...state, pending: undefined };
    writeState(cellDir, state);
  }
  for (const dir of ['upper', 'work', 'merged', 'trash']) makeDirs(join(cellDir, dir));
  // Leftovers of a purge that did not finish (a reboot); deleting twice is harmless.
  const trash = trashDirOf(cellDir);
  purgeInBackground(readdirSync(trash).map((name) => join(trash, name)));
  const stack = stackOf(cellDir, state);
  // A copy-driver run a killed agentcell left: its changes are still only in the copy.
  if (stack.driver === 'copy') captureCopy(stack);
  for (const layer of stack.layers) {
    if (!existsSync(layer.dir))
      throw new AgentcellError(
        'INTERNAL',
        `layer ${layer.id} of ${cellDir} is missing (${layer.dir}); restore the cell to a checkpoint below it, or remove the cell`,
      );
  }
  return stack;
}

/**
 * The stack as layers.json records it, changing nothing on disk (no directories made,
 * no interrupted operation finished, no purge): for planning and --dry-run.
 */
export function peekLayerStack(cellDir: string): LayerStack {
  const state = readState(cellDir);
  return stackOf(cellDir, { ...state, pending: undefined });
}

/** Freezes the upper layer as a new checkpoint and starts an empty one. Renames only. */
export function checkpoint(stack: LayerStack, options: CheckpointOptions): { stack: LayerStack; layer: FrozenLayer } {
  const state = readState(stack.cellDir);
  if (options.name !== undefined) checkCheckpointName(options.name);
  // Hashed before the freeze: the upper layer is what the frozen one will be (the caller holds the lock).
  const entries: string[] = [];
  const fingerprint = layerFingerprint(stack.upper, Date.now(), entries);
  const record = newLayerRecord(state, options, {
    ...fingerprint,
    ...(options.changes ? { changes: options.changes } : {}),
  });
  if (fingerprint.statHash !== undefined) saveStatList(stack.cellDir, fingerprint.statHash, entries);
  return addLayer(stack, state, record, { op: 'checkpoint', dir: layerDirName(record) });
}

/** The record of a layer about to join the stack, refused when the stack is full or the name taken. */
function newLayerRecord(state: StackState, options: CheckpointOptions, content: Partial<LayerRecord>): LayerRecord {
  if (state.layers.length >= MAX_LAYERS)
    throw new AgentcellError(
      'USAGE',
      `cell already has ${MAX_LAYERS} checkpoints, the most one overlay can stack; accept or restore first`,
    );
  if (options.name !== undefined && state.layers.some((l) => l.name === options.name))
    throw new AgentcellError('FILE_EXISTS', `a checkpoint named "${options.name}" already exists in this cell`);
  return {
    id: randomBytes(4).toString('hex'),
    seq: state.nextSeq,
    ...(options.name !== undefined ? { name: options.name } : {}),
    createdAt: new Date().toISOString(),
    policyHash: options.policyHash,
    ...content,
  };
}

/** Commits `record` on top of the stack, then moves its directory in: after a crash, openLayerStack finishes the move. */
function addLayer(
  stack: LayerStack,
  state: StackState,
  record: LayerRecord,
  pending: PendingOperation,
): { stack: LayerStack; layer: FrozenLayer } {
  const next: StackState = { ...state, nextSeq: state.nextSeq + 1, layers: [...state.layers, record] };
  writeState(stack.cellDir, { ...next, pending });
  finishPending(stack.cellDir, pending);
  writeState(stack.cellDir, next, SETTLED);
  const newStack = stackOf(stack.cellDir, next);
  return { stack: newStack, layer: newStack.layers[newStack.layers.length - 1]! };
}

/**
 * Empties the upper layer of a run that changed nothing (see idle-upper.ts): frozen, it
 * would be a layer that changes nothing, one more for each lookup in the cell to pass and
 * toward MAX_LAYERS (a cell that runs `git status` refused its 130th run). Renamed into
 * trash/ for the caller to purge; layers.json does not change. The caller holds the lock.
 */
export function dropUpper(stack: LayerStack): string {
  const trash = trashDirOf(stack.cellDir);
  makeDirs(trash);
  const target = join(trash, `${randomBytes(4).toString('hex')}-upper`);
  renameSync(stack.upper, target);
  makeDirs(stack.upper); // after a crash before this, openLayerStack makes it
  return target;
}

/**
 * Drops the upper layer and every frozen layer above `to` (all of them without `to`).
 * The dropped directories are renamed into trash/, so this returns in constant time;
 * the caller deletes them with `purgeInBackground(trashed)` once it has nothing more
 * urgent to do (starting that process is a fork, which costs more than the renames).
 * Whatever is left in trash/ is purged by the next `openLayerStack`.
 */
export function restore(stack: LayerStack, options: RestoreOptions = {}): Restored {
  const state = readState(stack.cellDir);
  const keep = options.to === undefined ? 0 : findLayer(state.layers, options.to) + 1;
  const checked = verifyLayers(stackOf(stack.cellDir, state).layers.slice(0, keep));
  const droppedRecords = state.layers.slice(keep);
  const token = randomBytes(4).toString('hex');
  const pending: PendingOperation = { op: 'restore', token, dirs: droppedRecords.map(layerDirName) };
  const kept = state.layers.slice(0, keep).map((l) => {
    const statHash = checked.get(l.id);
    return statHash === undefined || statHash === l.statHash ? l : { ...l, statHash };
  });
  const next: StackState = { ...state, layers: kept };
  const dropped = stackOf(stack.cellDir, state).layers.slice(keep);
  writeState(stack.cellDir, { ...next, pending });
  const trashed = finishPending(stack.cellDir, pending);
  writeState(stack.cellDir, next, SETTLED);
  pruneStatLists(
    stack.cellDir,
    kept.map((l) => l.statHash),
  );
  return { stack: stackOf(stack.cellDir, next), dropped, trashed };
}

/**
 * Makes `source` (a directory in this cell's state dir, on the same filesystem: a turn
 * checkpoint) the new top frozen layer, by rename. The caller has verified its content
 * against `contentHash` and emptied the upper layer (a restore), and holds the lock.
 */
export function adoptLayer(
  stack: LayerStack,
  source: string,
  options: CheckpointOptions & { contentHash: string },
): { stack: LayerStack; layer: FrozenLayer } {
  const state = readState(stack.cellDir);
  const record = newLayerRecord(state, options, { contentHash: options.contentHash });
  return addLayer(stack, state, record, { op: 'adopt', dir: layerDirName(record), from: source });
}

/**
 * Forgets the change counts the layers recorded when frozen: after a partial accept, part
 * of what they change is in the workspace, so a restore must diff them instead.
 */
export function forgetChangeCounts(stack: LayerStack): void {
  const state = readState(stack.cellDir);
  if (!state.layers.some((l) => l.changes !== undefined)) return;
  const layers = state.layers.map((l) => {
    const record = { ...l };
    delete record.changes;
    return record;
  });
  writeState(stack.cellDir, { ...state, layers });
}

/**
 * Copies a cell's layer stack into another cell dir, which must not have one yet.
 * Frozen layers are hard-linked (`cp -al`): overlayfs never writes a lower layer in
 * place (a change copies the file up into the upper layer first), so the two cells
 * can share those inodes safely, and a fork costs no data copy. The upper layer is
 * live (a later run appends to its files in place), so it is copied for real
 * (`cp -a --reflink=auto`, which keeps whiteouts and the opaque-dir xattrs).
 * Both need the cells on one filesystem, which they are (one state dir).
 */
export function fork(stack: LayerStack, newCellDir: string): LayerStack {
  const nonEmpty = (dir: string): boolean => existsSync(dir) && readdirSync(dir).length > 0;
  if (
    existsSync(join(newCellDir, STATE_FILE)) ||
    nonEmpty(join(newCellDir, 'upper')) ||
    nonEmpty(join(newCellDir, 'layers'))
  )
    throw new AgentcellError('FILE_EXISTS', `${newCellDir} already has a layer stack`);
  const state = readState(stack.cellDir);
  const layersDir = join(newCellDir, 'layers');
  makeDirs(layersDir);
  // Marked pending so that a crash mid-copy leaves a stack openLayerStack refuses, not a half copy.
  writeState(newCellDir, { ...state, pending: { op: 'fork', from: stack.cellDir } });
  const source = stackOf(stack.cellDir, state); // its layers verified by the caller, before it made the new cell
  if (source.layers.length > 0) copy(['-al', ...source.layers.map((l) => l.dir), layersDir]);
  copy(['-a', '--reflink=auto', '--no-target-directory', source.upper, join(newCellDir, 'upper')]);
  writeState(newCellDir, { ...state, pending: undefined });
  return openLayerStack(newCellDir);
}

/**
 * Verified restores: each layer a restore or fork keeps still has the content recorded
 * when it was frozen, or the operation stops, naming the layer, before anything changes.
 * A layer whose entries' inodes and change times are as recorded (`statHash`) is not
 * read; any other is hashed whole. Returns each checked layer's stat hash as it is now
 * (where settled), for layers.json: after a read, the next check needs none.
 */
export function verifyLayers(layers: readonly FrozenLayer[]): Map<string, string> {
  const statHashes = new Map<string, string>();
  for (const layer of layers) {
    if (layer.contentHash === undefined) continue;
    // A layer's dir is <cell>/layers/<name>: its stat list is kept in the cell dir.
    const cellDir = dirname(dirname(layer.dir));
    if (layer.statHash !== undefined && statHashHolds(cellDir, layer.dir, layer.statHash)) {
      statHashes.set(layer.id, layer.statHash);
      continue;
    }
    const entries: string[] = [];
    const now = layerFingerprint(layer.dir, Date.now(), entries);
    if (now.contentHash !== layer.contentHash)
      throw new AgentcellError(
        'LAYER_TAMPERED',
        `checkpoint ${layer.name ?? layer.id} (layer ${layerDirName(layer)}, ${layer.dir}) changed since it was frozen (content ${now.contentHash}, recorded ${layer.contentHash}): something outside agentcell wrote to it; restore to a checkpoint below it, or remove the cell`,
      );
    if (now.statHash !== undefined) {
      statHashes.set(layer.id, now.statHash);
      saveStatList(cellDir, now.statHash, entries);
    }
  }
  return statHashes;
}

/**
 * Whether the layer's entries still have the inodes and times recorded in `statHash`: over
 * the entries listed when it was taken (no directory read), else by a walk, whose list is
 * then saved for the next check.
 */
function statHashHolds(cellDir: string, dir: string, statHash: string): boolean {
  const listed = readStatList(cellDir, statHash);
  if (listed !== undefined && statHashOfListed(dir, listed) === statHash) return true;
  const entries: string[] = [];
  if (layerStatHash(dir, Date.now(), entries) !== statHash) return false;
  saveStatList(cellDir, statHash, entries);
  return true;
}

/** The overlayfs lowerdir list, top to bottom: frozen layers newest first, then the workspace. */
export function lowerDirs(stack: LayerStack, workspace: string): string[] {
  return [...stack.layers.map((l) => l.dir).reverse(), workspace];
}

/** Directory name of a layer under layers/, e.g. `0003-1a2b3c4d`. */
export function layerDirName(record: Pick<LayerRecord, 'seq' | 'id'>): string {
  return `${String(record.seq).padStart(4, '0')}-${record.id}`;
}

function stackOf(cellDir: string, state: StackState): LayerStack {
  return {
    cellDir,
    layers: state.layers.map((record) => ({ ...record, dir: join(cellDir, 'layers', layerDirName(record)) })),
    upper: join(cellDir, 'upper'),
    work: join(cellDir, 'work'),
    merged: join(cellDir, 'merged'),
    ...(state.driver !== undefined ? { driver: state.driver } : {}),
  };
}

const CHECKPOINT_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;
const LAYER_ID = /^[0-9a-f]{8}$/;

/** A name `restore --to` can find unambiguously: not empty, not a number (a seq), not id-shaped. */
export function checkCheckpointName(name: string): void {
  if (!CHECKPOINT_NAME.test(name) || LAYER_ID.test(name))
    throw new AgentcellError(
      'USAGE',
      `invalid checkpoint name ${JSON.stringify(name)}: use 1-63 letters, digits, ".", "_" or "-", starting with a letter, and not 8 hex digits (that is how checkpoint ids look)`,
    );
}

/** Index of a checkpoint by id, then name, then seq (the one lookup every command uses). */
export function findLayer(layers: readonly LayerRecord[], ref: string): number {
  let index = layers.findIndex((l) => l.id === ref);
  if (index < 0) index = layers.findIndex((l) => l.name === ref);
  if (index < 0 && /^\d+$/.test(ref)) index = layers.findIndex((l) => l.seq === Number(ref));
  if (index < 0)
    throw new AgentcellError(
      'USAGE',
      `no checkpoint "${ref}" in this cell; checkpoints: ${layers.map((l) => l.name ?? l.id).join(', ') || 'none'}`,
    );
  return index;
}

/**
 * Performs the renames of a committed operation. Each step checks what is already
 * done, so running it again after a crash is safe. Returns the directories trashed.
 */
function finishPending(cellDir: string, pending: PendingOperation): string[] {
  const upper = join(cellDir, 'upper');
  switch (pending.op) {
    case 'checkpoint': {
      const frozen = join(cellDir, 'layers', pending.dir);
      if (!existsSync(frozen)) {
        if (existsSync(upper)) renameSync(upper, frozen);
        else mkdirSync(frozen);
      }
      makeDirs(upper);
      return [];
    }
    case 'restore': {
      const trash = trashDirOf(cellDir);
      makeDirs(trash);
      const trashed: string[] = [];
      for (const dir of pending.dirs) {
        const target = join(trash, `${pending.token}-${dir}`);
        const source = join(cellDir, 'layers', dir);
        if (existsSync(source)) renameSync(source, target);
        trashed.push(target);
      }
      const upperTarget = join(trash, `${pending.token}-upper`);
      if (!existsSync(upperTarget) && existsSync(upper)) renameSync(upper, upperTarget);
      trashed.push(upperTarget);
      makeDirs(upper);
      return trashed;
    }
    case 'adopt': {
      const target = join(cellDir, 'layers', pending.dir);
      if (!existsSync(target)) renameSync(pending.from, target);
      return [];
    }
    case 'fork':
      throw new AgentcellError(
        'INTERNAL',
        `${cellDir} holds a fork of ${pending.from} that was interrupted; remove the cell and fork again`,
      );
  }
}

function readState(cellDir: string): StackState {
  const state = readStateFile(join(cellDir, STATE_FILE), LAYERS_FILE);
  if (!state) return { version: FORMAT_VERSION, nextSeq: 1, layers: [] };
  // layers.json files written before drivers existed are kernel ones.
  return { ...state, driver: state.driver ?? 'kernel' };
}

/**
 * The write that clears a finished operation's `pending` need not reach the disk: if a
 * crash loses it, the next open finds the operation pending and finishes it again,
 * which is a no-op (each step checks what is done). One fsync per checkpoint or restore.
 */
const SETTLED = { durable: false };

/** Rewrites layers.json whole (temp, rename), so readers see the old or the new list. */
function writeState(cellDir: string, state: StackState, options: { durable?: boolean } = {}): void {
  const { pending, ...rest } = state;
  writeStateFile(join(cellDir, STATE_FILE), LAYERS_FILE, pending ? { ...rest, pending } : rest, {
    ...options,
    mode: 0o644,
  });
}

function copy(args: string[]): void {
  const result = spawnSync('cp', args, { encoding: 'utf8' });
  if (result.error || result.status !== 0)
    throw new AgentcellError(
      'INTERNAL',
      `cannot copy the layer stack (cp ${args.join(' ')}): ${result.error?.message ?? result.stderr.trim()}`,
    );
}
