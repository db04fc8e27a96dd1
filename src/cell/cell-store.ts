import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import * as z from 'zod/mini';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import {
  cellStateFix,
  damagedStateFile,
  readStateFile,
  writeStateFile,
  type StateFileKind,
} from '../_internal/state-file.js';
import { anchorPath } from '../receipts/chain-anchor.js';
import { removeQuietly } from '../_internal/atomic-file.js';
import { removeTrees } from '../_internal/remove-trees.js';
import { checkCellName, defaultCellName } from './cell-name.js';
import { makeDirs } from '../_internal/make-dirs.js';

/**
 * What a cell remembers about itself (`<cell>/cell.json`); its layers, receipts and runs
 * live beside it. `workspace` decides where `accept` writes, so it is checked on every
 * read: an absolute path, never taken on trust.
 */
export const CellRecordSchema = z.strictObject({
  name: z.string().check(z.minLength(1)),
  workspace: z
    .string()
    .check(z.refine((path) => isAbsolute(path) && resolve(path) === path, 'an absolute, normalized path')),
  createdAt: z.iso.datetime(),
  /** The cell this one was forked from, if any. */
  forkedFrom: z.optional(z.string()),
  /**
   * The checkpoint of `forkedFrom` the fork started at (null: it had none yet): cells
   * forked from the same cell at the same checkpoint are siblings (`fork --count`), the
   * candidates `land --drop-siblings` drops. Absent on forks made before it was recorded.
   */
  forkPoint: z.optional(z.strictObject({ checkpoint: z.nullable(z.string()) })),
});
export type CellRecord = z.infer<typeof CellRecordSchema>;

const CELL_FILE: StateFileKind<typeof CellRecordSchema> = {
  schema: CellRecordSchema,
  what: 'the cell record',
  fix: cellStateFix,
};

export function cellsDir(paths: AgentcellPaths): string {
  return join(paths.state, 'cells');
}

export function cellDir(paths: AgentcellPaths, name: string): string {
  return join(cellsDir(paths), name);
}

export function cellFile(paths: AgentcellPaths, name: string): string {
  return join(cellDir(paths, name), 'cell.json');
}

/** The cell's record; undefined when there is no such cell, STATE_CORRUPT when its cell.json is damaged. */
export function readCell(paths: AgentcellPaths, name: string): CellRecord | undefined {
  const path = cellFile(paths, name);
  const record = readStateFile(path, CELL_FILE);
  if (record && record.name !== name)
    throw damagedStateFile(
      path,
      CELL_FILE,
      `name: expected ${JSON.stringify(name)}, got ${JSON.stringify(record.name)}`,
    );
  return record;
}

/**
 * The cell for a workspace, created on first use. A cell belongs to one workspace: its
 * layers are changes to that tree, so using it elsewhere would apply them to the wrong one.
 */
export function openCell(
  paths: AgentcellPaths,
  name: string,
  workspace: string,
  fork?: { from: string; point: NonNullable<CellRecord['forkPoint']> },
): CellRecord {
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
  if (fork !== undefined) {
    record.forkedFrom = fork.from;
    record.forkPoint = fork.point;
  }
  makeDirs(cellDir(paths, name), 0o700);
  writeStateFile(cellFile(paths, name), CELL_FILE, record, { mode: 0o644 });
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

/** The other cells forked from `name`'s parent at the same checkpoint. */
export function siblingCells(paths: AgentcellPaths, name: string): CellRecord[] {
  const record = readCell(paths, name);
  const point = record?.forkPoint;
  if (!record || point === undefined) return [];
  return listCells(paths).filter(
    (c) =>
      c.name !== name &&
      c.forkedFrom === record.forkedFrom &&
      c.forkPoint !== undefined &&
      c.forkPoint.checkpoint === point.checkpoint,
  );
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
  // By directory: one cell's damaged record must not hide which cells there are.
  let known: string[];
  try {
    known = readdirSync(cellsDir(paths))
      .filter((cell) => existsSync(cellFile(paths, cell)))
      .sort();
  } catch {
    known = [];
  }
  return new AgentcellError(
    'CELL_NOT_FOUND',
    `no cell ${name}` +
      (known.length > 0
        ? ` (cells: ${known.slice(0, 10).join(', ')}${known.length > 10 ? ', …' : ''})`
        : ' (there are no cells yet)') +
      '; agentcell run --cell NAME creates one',
  );
}
