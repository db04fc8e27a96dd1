import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { isProcessAlive } from '../_internal/process-identity.js';
import { cellDiff } from '../cell/cell-decisions.js';
import { cellDir } from '../cell/cell-store.js';
import { openTransaction } from '../cell/cell-transaction.js';
import { listReceipts } from '../receipts/receipt-store.js';
import { allSessions, updateSession, type LocatedSession, type SessionRecord } from './session-record.js';

/** A session as `session list` and `show` report it. */
export interface SessionView extends SessionRecord {
  /** The cell's changes not yet accepted or restored (all of its runs', not only this session's). */
  pendingChanges: number;
}

/**
 * Whether a session's supervisor died without finishing: its run is then receipted
 * `interrupted` (the next command that takes the cell does it; this does it now when
 * the cell is free) and the session is marked `lost`, its transcript kept. The pty
 * helper of a lost session exits on its own; one still there is ended.
 */
export async function settleSession(paths: AgentcellPaths, found: LocatedSession): Promise<SessionRecord> {
  const { record, dir } = found;
  if (record.state !== 'starting' && record.state !== 'running') return record;
  const supervisorAlive = record.supervisor !== null && isProcessAlive(record.supervisor);
  const ptyAlive = record.pty !== null && isProcessAlive(record.pty);
  if (supervisorAlive || (record.supervisor === null && ptyAlive)) return record;
  if (record.pty && ptyAlive)
    try {
      process.kill(record.pty.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  let receipt: string | null = null;
  if (record.run !== null) {
    try {
      const tx = await openTransaction(paths, record.cell, record.workspace, ['agentcell', 'session', 'list']);
      tx.release();
    } catch (error) {
      // A run in the cell now: it receipts the lost one itself when it starts.
      if (!(error instanceof AgentcellError && error.code === 'CELL_LOCKED')) throw error;
    }
    receipt = listReceipts(cellDir(paths, record.cell)).find((r) => r.id === record.run)?.id ?? null;
  }
  return updateSession(dir, { state: 'lost', receipt, endedAt: record.endedAt ?? new Date().toISOString() });
}

/** Every session (of one cell, or all), settled, with its cell's pending changes. */
export async function listSessions(paths: AgentcellPaths, cell?: string): Promise<SessionView[]> {
  const pending = new Map<string, number>();
  const views: SessionView[] = [];
  for (const found of allSessions(paths, cell)) {
    const record = await settleSession(paths, found);
    if (!pending.has(record.cell))
      pending.set(
        record.cell,
        (await cellDiff({ paths, cell: record.cell, workspace: record.workspace, command: [] })).length,
      );
    views.push({ ...record, pendingChanges: pending.get(record.cell) ?? 0 });
  }
  return views;
}
