import type { CellRef } from '../cell/cell-decisions.js';
import { checkCellName } from '../cell/cell-name.js';
import { cellNotFound, readCell } from '../cell/cell-store.js';
import type { AgentcellPaths } from '../paths.js';
import type { UiSecrets } from './ui-guard.js';

/** What every page and action of one dashboard launch sees. */
export interface UiContext {
  paths: AgentcellPaths;
  secrets: UiSecrets;
}

/**
 * The cell a page or action is about, as the CLI's `--cell` finds it. `command` is what
 * a decision's receipt records: agentcell's argv as if typed, marked as coming from the ui.
 */
export function uiCellRef(ctx: UiContext, given: string, command: string[] = []): CellRef {
  const cell = checkCellName(given);
  const record = readCell(ctx.paths, cell);
  if (!record) throw cellNotFound(ctx.paths, cell);
  return { paths: ctx.paths, cell, workspace: record.workspace, command: ['agentcell', 'ui', ...command] };
}
