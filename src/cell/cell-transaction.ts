import type { AgentcellPaths } from '../paths.js';
import { acquireCellLock } from '../receipts/cell-lock.js';
import { receiptStore, type ReceiptStore } from '../receipts/receipt-store.js';
import { recoverInterrupted } from '../receipts/run-journal.js';
import { loadOrCreateSigningKey } from '../receipts/signing-key.js';
import { cellDir, openCell, type CellRecord } from './cell-store.js';

/** A cell locked for a change: two commands never change one cell at once. */
export interface LockedCell {
  cell: CellRecord;
  dir: string;
  release: () => void;
}

/** A locked cell whose chain is ready to sign into. */
export interface CellTransaction extends LockedCell {
  store: ReceiptStore;
}

export async function lockCell(
  paths: AgentcellPaths,
  name: string,
  workspace: string,
  command: string[],
): Promise<LockedCell> {
  const cell = openCell(paths, name, workspace);
  const dir = cellDir(paths, name);
  return { cell, dir, release: await acquireCellLock(dir, { command }) };
}

/**
 * The cell's receipt chain, after receipting as `interrupted` every run a killed
 * agentcell left behind (DESIGN invariant 6): whatever command comes next finalizes them.
 */
export async function openReceipts(paths: AgentcellPaths, locked: LockedCell): Promise<ReceiptStore> {
  const store = receiptStore(locked.dir, loadOrCreateSigningKey(paths.config), locked.cell.name);
  await recoverInterrupted(store);
  return store;
}

/** Every command that changes a cell and is not a run starts here. */
export async function openTransaction(
  paths: AgentcellPaths,
  name: string,
  workspace: string,
  command: string[],
): Promise<CellTransaction> {
  const locked = await lockCell(paths, name, workspace, command);
  try {
    return { ...locked, store: await openReceipts(paths, locked) };
  } catch (error) {
    locked.release();
    throw error;
  }
}
