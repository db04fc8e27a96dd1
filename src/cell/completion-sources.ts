import { join } from 'node:path';
import type { AgentcellPaths } from '../paths.js';
import { peekLayerStack } from '../workspace/overlay/layer-stack.js';
import { cellDir, listCells } from './cell-store.js';
import { checkCellName, defaultCellName } from './cell-name.js';
import { existsSync, realpathSync } from 'node:fs';

/** Cell names on this machine, for shell completion. Reads only. */
export function cellNames(paths: AgentcellPaths): string[] {
  return listCells(paths).map((c) => c.name);
}

/**
 * The checkpoints of a cell (the workspace's default cell when none is named) by name and
 * by id, for `restore --to`. Reads layers.json only; a cell with none yet has none.
 */
export function checkpointRefs(paths: AgentcellPaths, cell: string | undefined, cwd: string): string[] {
  let name: string;
  try {
    name = cell !== undefined ? checkCellName(cell) : defaultCellName(realpathSync(cwd));
  } catch {
    return [];
  }
  const dir = cellDir(paths, name);
  if (!existsSync(join(dir, 'layers.json'))) return [];
  return peekLayerStack(dir).layers.flatMap((l) => (l.name ? [l.name, l.id] : [l.id]));
}
