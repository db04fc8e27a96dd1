import { AgentcellError } from '../errors.js';
import { sweepNeutralDir } from '../_internal/neutral-dir.js';
import type { AgentcellPaths } from '../paths.js';
import { acquireCellLock } from '../receipts/cell-lock.js';
import { purgeTrash } from '../workspace/overlay/layer-trash.js';
import { cellDir, listCells } from './cell-store.js';

export interface GcReport {
  cells: string[];
  /** Entries of killed runs removed from the neutral runtime dir on /dev/shm (see sweepNeutralDir). */
  runtime: string[];
  /** Cells another command holds: their trash may be filling (an accept sets entries aside there), so it is left alone. */
  busy: string[];
}

/** Deletes what is left in every idle cell's trash/ (dropped layers, entries accept set aside) and what killed runs left on /dev/shm. */
export async function collectGarbage(paths: AgentcellPaths, options: { dryRun: boolean }): Promise<GcReport> {
  const cells = listCells(paths).map((c) => c.name);
  const busy: string[] = [];
  const runtime = sweepNeutralDir({ dryRun: options.dryRun });
  if (options.dryRun) return { cells, busy, runtime };
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
  return { cells, busy, runtime };
}
