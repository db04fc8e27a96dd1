import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AgentcellError } from '../errors.js';
import type { Receipt } from '../receipts/receipt.js';
import { receiptsNamed, receiptsNewestFirst } from '../receipts/receipt-store.js';
import { listJournal } from '../receipts/run-journal.js';
import { layerContentHash } from '../workspace/overlay/layer-hash.js';
import type { FrozenLayer, LayerStack } from '../workspace/overlay/layer-stack.js';
import {
  listTurnRuns,
  moveToTrash,
  readTurnSet,
  turnSetDir,
  type TurnRecord,
} from '../workspace/overlay/turn-layers.js';

/** `turn:N` (the newest run that recorded turns) or `turn:N@RUN` (a run id or a unique prefix of one). */
const TURN_REF = /^turn:([1-9][0-9]{0,5})(?:@(r-[0-9a-z-]+))?$/;

export interface TurnRef {
  turn: number;
  run?: string;
}

export function parseTurnRef(ref: string): TurnRef | undefined {
  const match = TURN_REF.exec(ref);
  if (!match) return undefined;
  return { turn: Number(match[1]), ...(match[2] !== undefined ? { run: match[2] } : {}) };
}

/** A turn checkpoint a restore can go back to, checked against the signed receipt and the stack. */
export interface TurnTarget {
  run: Receipt;
  record: TurnRecord & { dir: string; contentHash: string };
  /** The copy's directory. */
  dir: string;
  /** The frozen layers below the run (kept); the rest and the upper are dropped. */
  keep: FrozenLayer[];
  /** The name the turn's layer gets: `turnN.RUN`. */
  layerName: string;
}

/**
 * Finds turn `ref` and checks it can be restored: the run is receipted (not still
 * running), its layer is still on the stack right above the checkpoint it started on,
 * and the copy's content still matches the hash in the signed receipt and in turns.json
 * (verified restores: a turn copy changed since is refused, naming it).
 */
export function resolveTurn(stack: LayerStack, ref: TurnRef): TurnTarget {
  const dir = stack.cellDir;
  const run = findRun(dir, ref);
  const signed = run.turns?.find((t) => t.turn === ref.turn);
  const turns = readTurnSet(dir, run.id)?.turns ?? [];
  const record = turns.find((t) => t.turn === ref.turn);
  const name = `turn:${ref.turn}@${run.id}`;
  if (!signed || !record)
    throw new AgentcellError(
      'USAGE',
      `run ${run.id} has no turn ${ref.turn}${turns.length > 0 ? `; its turns: 1–${turns.length}` : ' kept in this cell (its turn checkpoints were dropped with its layer)'}`,
    );
  if (record.skipped !== undefined || record.dir === undefined || record.contentHash === undefined)
    throw new AgentcellError('USAGE', `${name} has no checkpoint: ${record.skipped ?? 'it was not taken'}`);
  const before = run.checkpoint.before;
  const keepCount = before === null ? 0 : stack.layers.findIndex((l) => l.id === before) + 1;
  if (before !== null && keepCount === 0)
    throw new AgentcellError(
      'USAGE',
      `${name}: checkpoint ${before}, which run ${run.id} started on, is no longer in this cell (accepted or restored since)`,
    );
  const after = run.checkpoint.after;
  if (after === null)
    throw new AgentcellError(
      'USAGE',
      `${name}: run ${run.id} froze no layer (nothing it wrote was left at its end), so there is no state of its turns to go back to`,
    );
  if (stack.layers[keepCount]?.id !== after)
    throw new AgentcellError(
      'USAGE',
      `${name}: the layer run ${run.id} froze (${after}) is no longer in this cell above the checkpoint it started on (accepted or restored since)`,
    );
  const copy = join(turnSetDir(dir, run.id), record.dir);
  if (!existsSync(copy))
    throw new AgentcellError('LAYER_TAMPERED', `${name}: its checkpoint ${copy} is missing; restore to a checkpoint`);
  const now = layerContentHash(copy);
  if (signed.contentHash !== record.contentHash || now !== record.contentHash)
    throw new AgentcellError(
      'LAYER_TAMPERED',
      `${name} (${copy}) changed since it was taken (content ${now}, recorded ${record.contentHash}, receipt ${run.id} ${signed.contentHash ?? 'none'}): something outside agentcell wrote to it; restore to a checkpoint instead`,
    );
  return {
    run,
    record: { ...record, dir: record.dir, contentHash: record.contentHash },
    dir: copy,
    keep: stack.layers.slice(0, keepCount),
    layerName: `turn${ref.turn}.${run.id}`,
  };
}

/**
 * Moves to trash/ the turn checkpoints that can no longer be restored: those of runs
 * whose layer is not on the stack (accepted, restored, or the run froze none). A run
 * not receipted yet (running, or killed and not yet found) keeps its turns.
 */
export function pruneTurns(stack: LayerStack, except: readonly string[] = []): string[] {
  const runs = listTurnRuns(stack.cellDir).filter((run) => !except.includes(run));
  if (runs.length === 0) return [];
  const live = new Set(stack.layers.map((l) => l.id));
  // Only these runs' receipts are read: a cell's history grows with every run, and this is on each run's start.
  const wanted = new Set(runs);
  const receipts = new Map(receiptsNamed(stack.cellDir, (id) => wanted.has(id)).map((r) => [r.id, r]));
  const stale = runs.filter((run) => {
    const receipt = receipts.get(run);
    return receipt !== undefined && (receipt.checkpoint.after === null || !live.has(receipt.checkpoint.after));
  });
  return moveToTrash(
    stack.cellDir,
    stale.map((run) => turnSetDir(stack.cellDir, run)),
  );
}

function findRun(dir: string, ref: TurnRef): Receipt {
  const running = listJournal(dir).entries;
  if (ref.run !== undefined) {
    const prefix = ref.run;
    const found = receiptsNamed(dir, (id) => id.startsWith(prefix)).filter(
      (r) => r.kind === 'run' && r.id.startsWith(prefix),
    );
    if (found.length === 1) return found[0]!;
    if (running.some((e) => e.id.startsWith(prefix)))
      throw new AgentcellError(
        'CELL_LOCKED',
        `run ${prefix} has not ended: turn checkpoints can be restored once its run (or session) ended; stop it first (agentcell session stop)`,
      );
    throw new AgentcellError(
      'USAGE',
      found.length === 0 ? `no run ${prefix} in this cell` : `run id prefix ${prefix} is ambiguous`,
    );
  }
  if (running.some((e) => (e.draft.turns ?? []).length > 0))
    throw new AgentcellError(
      'CELL_LOCKED',
      'the run that is recording turns has not ended: turn checkpoints can be restored once its run (or session) ended; stop it first (agentcell session stop)',
    );
  let withTurns: Receipt | undefined;
  for (const r of receiptsNewestFirst(dir))
    if (r.kind === 'run' && (r.turns ?? []).length > 0) {
      withTurns = r;
      break;
    }
  if (!withTurns)
    throw new AgentcellError(
      'USAGE',
      'no run in this cell recorded turn checkpoints: they need an overlay workspace and the agent’s LLM requests through an inspected provider host (docs/sessions.md, "Turn checkpoints")',
    );
  return withTurns;
}
