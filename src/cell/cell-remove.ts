import { existsSync } from 'node:fs';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { acquireCellLock, cellLockHolder } from '../receipts/cell-lock.js';
import { describeHolder } from '../_internal/file-lock.js';
import { isProcessAlive } from '../_internal/process-identity.js';
import { cellDiff } from './cell-decisions.js';
import { cellDir, cellNotFound, readCell, removeCellDir, type CellRecord } from './cell-store.js';
import { keepReceipts, receiptCount } from './keep-receipts.js';

export interface CellRemoval {
  cell: string;
  dir: string;
  removed: boolean;
  /** Pending changes dropped; null when the cell's state is too damaged to tell. */
  droppedChanges: number | null;
  /** Receipts the cell had. */
  receipts: number;
  /** Where they were kept (`keepReceipts`), or null when they went with the cell. */
  keptReceipts: string | null;
}

/**
 * `cell rm`: refuses a cell with pending changes unless `force`. With `force` it also
 * removes a cell whose state files are damaged (STATE_CORRUPT), which is the way out
 * those errors point to; its pending changes then can't be counted.
 */
export async function removeCell(
  paths: AgentcellPaths,
  name: string,
  options: {
    force: boolean;
    dryRun: boolean;
    command: string[];
    /** Copy the receipts out first (keep-receipts.ts); a function is asked, with their count, when there are some. */
    keepReceipts?: boolean | ((receipts: number) => Promise<boolean>);
  },
): Promise<CellRemoval> {
  const dir = cellDir(paths, name);
  // Damage is forgiven only with force, and only damage: any other error still stops the removal.
  const damaged = (error: unknown): null => {
    if (options.force && error instanceof AgentcellError && error.code === 'STATE_CORRUPT') return null;
    throw error;
  };
  let record: CellRecord | undefined | null;
  try {
    record = readCell(paths, name);
  } catch (error) {
    record = damaged(error);
  }
  if (record === undefined || (record === null && !existsSync(dir))) throw cellNotFound(paths, name);
  let pending: number | null = null;
  if (record !== null)
    try {
      pending = (await cellDiff({ paths, cell: name, workspace: record.workspace, command: [] })).length;
    } catch (error) {
      pending = damaged(error);
    }
  if (pending !== null && pending > 0 && !options.force)
    throw new AgentcellError(
      'USAGE',
      `cell ${name} has ${pending} pending change(s); accept or restore them, or rm --force to drop them`,
    );
  const receipts = receiptCount(paths, name);
  let kept: string | null = null;
  if (options.dryRun) {
    const holder = cellLockHolder(dir);
    if (holder && isProcessAlive(holder))
      throw new AgentcellError('CELL_LOCKED', `cell ${name} is in use by ${describeHolder(holder)}`);
  } else {
    const ask = options.keepReceipts;
    const keep = typeof ask === 'function' ? receipts > 0 && (await ask(receipts)) : ask === true;
    // Holding the lock while removing: no run can start in between (a dead holder's lock is broken).
    const release = await acquireCellLock(dir, { command: options.command });
    try {
      if (keep) kept = keepReceipts(paths, name);
      removeCellDir(paths, name);
    } finally {
      release();
    }
  }
  return { cell: name, dir, removed: !options.dryRun, droppedChanges: pending, receipts, keptReceipts: kept };
}
