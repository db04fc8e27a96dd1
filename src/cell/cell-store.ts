import { readdirSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { readJsonFile } from '../_internal/read-json-file.js';
import { anchorPath } from '../receipts/chain-anchor.js';
import { removeQuietly } from '../_internal/atomic-file.js';
import { removeTrees } from '../_internal/remove-trees.js';
import { checkCellName, defaultCellName } from './cell-name.js';
import { makeDirs } from '../_internal/make-dirs.js';

/** What a cell remembers about itself; its layers, receipts and runs live beside it. */
export interface CellRecord {
  name: string;
  workspace: string;
  createdAt: string;
  /** The cell this one was forked from, if any. */
  forkedFrom?: string;
}

export function cellsDir(paths: AgentcellPaths): string {
  return join(paths.state, 'cells');
}

export function cellDir(paths: AgentcellPaths, name: string): string {
  return join(cellsDir(paths), name);
}

export function readCell(paths: AgentcellPaths, name: string): CellRecord | undefined {
  return readJsonFile<CellRecord>(join(cellDir(paths, name), 'cell.json'));
}

/**
 * The cell for a workspace, created on first use. A cell belongs to one workspace: its
 * layers are changes to that tree, so using it elsewhere would apply them to the wrong one.
 */
export function openCell(paths: AgentcellPaths, name: string, workspace: string, forkedFrom?: string): CellRecord {
  const existing = readCell(paths, name);
  if (existing) {
    if (existing.workspace !== workspace)
      throw new AgentcellError(
        'CELL_CONFLICT',
        `cell ${name} belongs to ${existing.workspace}, not ${workspace}; pick another --cell name`,
      );
    return existing;
  }
  const record: CellRecord = { name, workspace, createdAt: new Date().toISOString() };
  if (forkedFrom !== undefined) record.forkedFrom = forkedFrom;
  const dir = cellDir(paths, name);
  makeDirs(dir, 0o700);
  const temp = join(dir, `.cell.json.${process.pid}`);
  writeFileSync(temp, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(temp, join(dir, 'cell.json'));
  return record;
}

export function listCells(paths: AgentcellPaths): CellRecord[] {
  let names: string[];
  try {
    names = readdirSync(cellsDir(paths));
  } catch {
    return [];
  }
  return names
    .map((name) => readCell(paths, name))
    .filter((c): c is CellRecord => c !== undefined)
    .sort((a, b) => a.name.localeCompare(b.name));
}

export function removeCellDir(paths: AgentcellPaths, name: string): void {
  // removeTrees also enters overlayfs's mode-000 work dir, which rm -rf cannot as non-root.
  removeTrees([cellDir(paths, name)]);
  // The chain's anchor goes with it: a new cell of the same name starts a new chain.
  removeQuietly(anchorPath(paths.config, cellDir(paths, name), name));
}

/**
 * The cell a command is about: `--cell NAME` (its own workspace, if it exists), else the
 * default cell of `--workspace` or the current directory.
 */
export function locateCell(
  paths: AgentcellPaths,
  options: { cell?: string; workspace?: string },
  cwd: string = process.cwd(),
): { cell: string; workspace: string } {
  const named = options.cell !== undefined ? checkCellName(options.cell) : undefined;
  if (named !== undefined) {
    const existing = readCell(paths, named);
    if (existing) return { cell: existing.name, workspace: existing.workspace };
  }
  let workspace: string;
  try {
    workspace = realpathSync(resolve(cwd, options.workspace ?? '.'));
  } catch {
    throw new AgentcellError('WORKSPACE_INVALID', `workspace ${options.workspace ?? cwd} does not exist`);
  }
  return { cell: named ?? defaultCellName(workspace), workspace };
}

/**
 * locateCell for commands that read or decide about a cell and never create one: a cell
 * named with `--cell` must exist (a typo must not read as "nothing here"). The
 * workspace's own cell may not exist yet; it then reads as empty.
 */
export function locateExistingCell(
  paths: AgentcellPaths,
  options: { cell?: string; workspace?: string },
  cwd: string = process.cwd(),
): { cell: string; workspace: string } {
  const located = locateCell(paths, options, cwd);
  if (options.cell !== undefined && !readCell(paths, located.cell)) throw cellNotFound(paths, located.cell);
  return located;
}

export function cellNotFound(paths: AgentcellPaths, name: string): AgentcellError {
  const known = listCells(paths).map((c) => c.name);
  return new AgentcellError(
    'CELL_NOT_FOUND',
    `no cell ${name}` +
      (known.length > 0
        ? ` (cells: ${known.slice(0, 10).join(', ')}${known.length > 10 ? ', …' : ''})`
        : ' (there are no cells yet)') +
      '; agentcell run --cell NAME creates one',
  );
}
