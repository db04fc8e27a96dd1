import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { acquireCellLock } from '../receipts/cell-lock.js';
import { purgeTrash } from '../workspace/overlay/layer-trash.js';
import { cellDir, listCells } from './cell-store.js';

export interface GcReport {
  cells: string[];
  /** Cells another command holds: their trash may be filling (an accept sets entries aside there), so it is left alone. */
  busy: string[];
}

/** Deletes what is left in every idle cell's trash/ (dropped layers, entries accept set aside). */
export async function collectGarbage(paths: AgentcellPaths, options: { dryRun: boolean }): Promise<GcReport> {
  const cells = listCells(paths).map((c) => c.name);
  const busy: string[] = [];
  if (options.dryRun) return { cells, busy };
  for (const name of cells) {
    let release: () => void;
    try {
      release = await acquireCellLock(cellDir(paths, name), { command: ['agentcell', 'gc'] });
    } catch (error) {
      if (error instanceof AgentcellError && error.code === 'CELL_LOCKED') {
        busy.push(name);
        continue;
      }
      throw error;
    }
    try {
      purgeTrash(cellDir(paths, name));
    } finally {
      release();
    }
  }
  return { cells, busy };
}
