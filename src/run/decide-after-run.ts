import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import type { Receipt } from '../receipts/receipt.js';
import { acceptCell, restoreCell } from '../cell/cell-decisions.js';
import type { PreparedRun } from './prepare-run.js';

/** What to do with a run's changes once it has ended (`--restore-on-fail`, `--accept-on-success`). */
export interface AfterRunOptions {
  /** Drop this run's changes when its command failed. */
  restoreOnFail?: boolean;
  /** Apply the cell's changes to the workspace when its command succeeded. */
  acceptOnSuccess?: boolean;
  /** The command line that asked, as the decision's journal records it. */
  command: string[];
}

/** What was decided after a run, for the caller to report. */
export type AfterRun =
  /** Nothing was asked for, or not for this exit code. */
  | { decision: 'none' }
  /** Asked for, but a direct or read-only workspace has no changes held back to decide on. */
  | { decision: 'live'; workspaceMode: 'direct' | 'readonly' }
  | { decision: 'restored'; exitCode: Receipt['exitCode']; dropped: number }
  | { decision: 'accepted'; applied: number }
  /** The run succeeded but accept refused (a conflict, a flagged change): its changes stay in the cell for review. */
  | { decision: 'not-accepted'; reason: string };

/** Takes the decision the options ask for, right after the run whose receipt this is. */
export async function decideAfterRun(
  prepared: PreparedRun,
  paths: AgentcellPaths,
  receipt: Receipt,
  options: AfterRunOptions,
): Promise<AfterRun> {
  const { exitCode } = receipt;
  const mode = prepared.spec.workspace.mode;
  if (mode !== 'overlay')
    return options.restoreOnFail || options.acceptOnSuccess
      ? { decision: 'live', workspaceMode: mode }
      : { decision: 'none' };
  const ref = { paths, cell: prepared.cell, workspace: prepared.workspace, command: options.command };
  if (options.restoreOnFail && exitCode !== 0) {
    // Only this run's changes: back to the checkpoint it started from.
    const before = receipt.checkpoint.before;
    const r = await restoreCell(ref, { dryRun: false, ...(before !== null ? { to: before } : {}) });
    return { decision: 'restored', exitCode, dropped: r.changes.added + r.changes.modified + r.changes.deleted };
  }
  if (options.acceptOnSuccess && exitCode === 0) {
    try {
      const r = await acceptCell(ref, { force: false, dryRun: false });
      return { decision: 'accepted', applied: r.applied.length };
    } catch (error) {
      if (error instanceof AgentcellError) return { decision: 'not-accepted', reason: error.message };
      throw error;
    }
  }
  return { decision: 'none' };
}
