import { pruneTurns } from '../cell/turn-checkpoints.js';
import { updateRun, type RunDraft } from '../receipts/run-journal.js';
import type { LayerStack } from '../workspace/overlay/layer-stack.js';
import { createTurnRecorder, type TurnRecord, type TurnRecorder } from '../workspace/overlay/turn-layers.js';
import type { PreparedRun } from './prepare-run.js';

/**
 * A run's turn checkpoints (turn-layers.ts): taken where the gateway sees the agent's LLM
 * requests (an inspected provider host, so the spy) and the run writes a host-visible
 * upper layer (kernel overlayfs or fuse-overlayfs, on bwrap and on OCI backends alike;
 * not the copy driver, whose copy is captured only at the end). Each turn is journaled
 * as it is taken, so a killed run's `interrupted` receipt lists them too. Turn
 * checkpoints of runs whose layer has left the stack are dropped first (`trashed`).
 */
export function startTurnRecording(
  prepared: PreparedRun,
  stack: LayerStack | undefined,
  run: string,
): { recorder?: TurnRecorder; trashed: string[] } {
  if (!stack || stack.driver === 'copy' || !prepared.egress?.inspect) return { trashed: [] };
  // Moved into the cell's trash now; the caller deletes them once the run is over (a
  // detached process: its fork would delay the cell's start).
  const trashed = pruneTurns(stack, [run]);
  const recorder = createTurnRecorder({
    cellDir: stack.cellDir,
    upper: stack.upper,
    run,
    onRecord: (turns) => updateRun(stack.cellDir, run, { turns: receiptTurns(turns) }),
  });
  return { recorder, trashed };
}

/** What the receipt keeps of each turn: when, and the hash its checkpoint is verified against. */
export function receiptTurns(turns: readonly TurnRecord[]): NonNullable<RunDraft['turns']> {
  return turns.map((t) => ({
    turn: t.turn,
    at: t.at,
    contentHash: t.contentHash ?? null,
    ...(t.skipped !== undefined ? { skipped: t.skipped } : {}),
  }));
}
