import { AgentcellError } from '../errors.js';
import { acceptCell, type AcceptOptions, type AcceptReport, type CellRef } from './cell-decisions.js';
import { removeCell, type CellRemoval } from './cell-remove.js';
import { readCell, siblingCells } from './cell-store.js';

export interface LandOptions extends Omit<AcceptOptions, 'paths' | 'exclude'> {
  /** Then remove the cells forked from the same parent at the same checkpoint. */
  dropSiblings: boolean;
}

export interface LandCellReport {
  cell: string;
  accepted: AcceptReport;
  /** The siblings removed (or, dry, that would be), their receipts kept as `cell rm --keep-receipts` keeps them. */
  dropped: CellRemoval[];
  dryRun: boolean;
}

/**
 * `land CELL [--drop-siblings]`: the whole accept of CELL (`acceptCell`: conflicts
 * refused or merged, `--force`, a branch cell landing its branch), then the removal of
 * its siblings. Nothing is dropped unless the accept succeeded: a refused accept throws
 * before any sibling is touched. A sibling in use by another command is found before the
 * accept, so the usual failure can't leave the accept done and the siblings kept.
 */
export async function landCell(ref: CellRef, options: LandOptions): Promise<LandCellReport> {
  const record = readCell(ref.paths, ref.cell);
  if (options.dropSiblings && record?.forkPoint === undefined)
    throw new AgentcellError(
      'USAGE',
      `cell ${ref.cell} is not a fork (fork NEW --count N makes siblings), so it has no siblings to drop; use accept`,
    );
  const siblings = options.dropSiblings ? siblingCells(ref.paths, ref.cell).map((c) => c.name) : [];
  const removal = (dryRun: boolean) => ({ force: true, dryRun, keepReceipts: true, command: ref.command });
  // A dry removal checks that the sibling exists and that no live command holds it.
  const planned: CellRemoval[] = [];
  for (const sibling of siblings) planned.push(await removeCell(ref.paths, sibling, removal(true)));
  const accepted = await acceptCell(ref, {
    force: options.force,
    dryRun: options.dryRun,
    ...(options.merge !== undefined ? { merge: options.merge } : {}),
  });
  if (options.dryRun) return { cell: ref.cell, accepted, dropped: planned, dryRun: true };
  const dropped: CellRemoval[] = [];
  const failed: string[] = [];
  for (const sibling of siblings) {
    try {
      dropped.push(await removeCell(ref.paths, sibling, removal(false)));
    } catch (error) {
      failed.push(`  ${sibling}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (failed.length > 0)
    throw new AgentcellError(
      'CELL_LOCKED',
      `accepted ${ref.cell} and dropped ${dropped.map((d) => d.cell).join(', ') || 'no sibling'}, but not:\n${failed.join('\n')}\nRemove them with agentcell cell rm --force --keep-receipts.`,
    );
  return { cell: ref.cell, accepted, dropped, dryRun: false };
}
