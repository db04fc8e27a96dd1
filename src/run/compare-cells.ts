import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import type { Receipt } from '../receipts/receipt.js';
import { cellDiff, cellPatch, forkCells, undecidedRuns, type CellRef } from '../cell/cell-decisions.js';
import { removeCell } from '../cell/cell-remove.js';
import { cellDir, cellNotFound, readCell } from '../cell/cell-store.js';
import { countChanges } from '../workspace/overlay/layer-diff.js';
import { spyLogPath } from '../egress/log/spy-files.js';
import { parseSpyRecord, readSpyLog } from '../egress/log/spy-render.js';
import { prepareRun, type CellOptions } from './prepare-run.js';
import { runPrepared } from './run-cell.js';

export interface CheckResult {
  command: string;
  /** The cell the check ran in: a fork of the candidate, removed after the run. */
  ranIn: string;
  exitCode: number;
  passed: boolean;
  /** The check run's receipt, and where it was kept when its cell was removed. */
  receipt: string;
  keptReceipts: string | null;
}

/** One cell's column in `compare`. */
export interface CellComparison {
  cell: string;
  forkedFrom?: string;
  /** The parent's checkpoint the cell was forked at. */
  forkCheckpoint?: string | null;
  /** Pending files (and symlinks) by change: what `accept` would apply. Directories are not counted. */
  files: { added: number; modified: number; deleted: number };
  /** Lines added and removed over the pending changes' unified diffs (`diff --stat`), and binary files. */
  lines: { added: number; removed: number; binaryFiles: number };
  /** The runs whose changes are pending (since the last accept or restore); totals below are over them. */
  runs: number;
  lastRun?: { id: string; command: string[]; exitCode: number | null; status: Receipt['status'] };
  egress: { allowed: number; denied: number };
  /** From the runs' spy logs (`[network] inspect` hosts); absent when no call recorded usage. */
  tokens?: { input: number; output: number; calls: number };
  check?: CheckResult;
}

export interface CompareOptions {
  paths: AgentcellPaths;
  /** agentcell's argv, for the receipts a check writes. */
  command: string[];
  /** `--check CMD`: run `sh -c CMD` in a fork of each cell. */
  check?: string;
  /** How a check runs (backend, timeout, …), as for `run`. */
  runOptions?: CellOptions;
  /** With a check: plan it, run nothing (the other columns are read as usual). */
  dryRun?: boolean;
  /** Told before each check starts. */
  onCheck?: (cell: string, forkName: string) => void;
}

/**
 * `compare CELL…`: each cell's pending changes, diff size, runs, egress and tokens, from
 * its layers and receipts, and with `check` the check's result in each. A check runs in a
 * throwaway fork of the cell (hard-linked layers: cheap), so its writes, its exit code
 * and its receipt never become the candidate's: accept would refuse a cell whose last run
 * failed. The fork's receipts are kept (`cell rm --keep-receipts`) when it is removed.
 */
export async function compareCells(cells: readonly string[], options: CompareOptions): Promise<CellComparison[]> {
  if (cells.length === 0) throw new AgentcellError('USAGE', 'name the cells to compare');
  const refs = cells.map((cell): CellRef => {
    const record = readCell(options.paths, cell);
    if (!record) throw cellNotFound(options.paths, cell);
    return { paths: options.paths, cell, workspace: record.workspace, command: options.command };
  });
  const rows: CellComparison[] = [];
  for (const ref of refs) {
    const row = await readComparison(ref);
    if (options.check !== undefined && !options.dryRun) row.check = await runCheck(ref, options.check, options);
    rows.push(row);
  }
  return rows;
}

async function readComparison(ref: CellRef): Promise<CellComparison> {
  const record = readCell(ref.paths, ref.cell)!;
  const changes = (await cellDiff(ref)).filter((c) => c.kind !== 'dir');
  const patches = await cellPatch(ref);
  const runs = undecidedRuns(cellDir(ref.paths, ref.cell));
  const last = runs.at(-1);
  const tokens = spyTokens(cellDir(ref.paths, ref.cell), runs);
  return {
    cell: ref.cell,
    ...(record.forkedFrom !== undefined ? { forkedFrom: record.forkedFrom } : {}),
    ...(record.forkPoint !== undefined ? { forkCheckpoint: record.forkPoint.checkpoint } : {}),
    files: countChanges(changes),
    lines: {
      added: patches.reduce((n, p) => n + p.added, 0),
      removed: patches.reduce((n, p) => n + p.removed, 0),
      binaryFiles: patches.filter((p) => p.binary).length,
    },
    runs: runs.length,
    ...(last ? { lastRun: { id: last.id, command: last.command, exitCode: last.exitCode, status: last.status } } : {}),
    egress: {
      allowed: runs.reduce((n, r) => n + r.egress.allowed, 0),
      denied: runs.reduce((n, r) => n + r.egress.denied, 0),
    },
    ...(tokens ? { tokens } : {}),
  };
}

/** Token usage the runs' spy logs recorded; undefined when none recorded any. */
function spyTokens(dir: string, runs: readonly Receipt[]): CellComparison['tokens'] {
  let input = 0;
  let output = 0;
  let calls = 0;
  for (const run of runs) {
    const path = spyLogPath(dir, run.id);
    if (!existsSync(path)) continue;
    for (const record of readSpyLog(path)) {
      const { usage } = parseSpyRecord(record);
      if (usage.input === undefined && usage.output === undefined) continue;
      input += usage.input ?? 0;
      output += usage.output ?? 0;
      calls++;
    }
  }
  return calls > 0 ? { input, output, calls } : undefined;
}

/** A cell name for the check's fork: the candidate's, shortened, and a random part. */
function checkForkName(cell: string): string {
  return `${cell.slice(0, 48)}.check-${randomBytes(3).toString('hex')}`;
}

async function runCheck(ref: CellRef, check: string, options: CompareOptions): Promise<CheckResult> {
  const fork = checkForkName(ref.cell);
  await forkCells(ref, [fork], { dryRun: false });
  try {
    options.onCheck?.(ref.cell, fork);
    const prepared = await prepareRun({
      ...options.runOptions,
      paths: options.paths,
      cell: fork,
      workspace: ref.workspace,
      // The check's output goes to stderr: stdout is compare's (its table or JSON).
      argv: ['sh', '-c', `exec 1>&2\n${check}`],
      tty: false,
    });
    const { outcome, receipt } = await runPrepared(prepared, options.paths);
    const exitCode = outcome.exitCode;
    const removed = await removeCell(options.paths, fork, {
      force: true,
      dryRun: false,
      keepReceipts: true,
      command: options.command,
    });
    return {
      command: check,
      ranIn: fork,
      exitCode,
      passed: exitCode === 0,
      receipt: receipt.id,
      keptReceipts: removed.keptReceipts,
    };
  } catch (error) {
    // The fork is scratch: it goes, receipts kept, whatever stopped the check.
    if (readCell(options.paths, fork))
      await removeCell(options.paths, fork, {
        force: true,
        dryRun: false,
        keepReceipts: true,
        command: options.command,
      });
    throw error;
  }
}
