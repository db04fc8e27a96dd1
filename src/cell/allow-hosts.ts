import { chownSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AgentcellError, type ErrorCode } from '../errors.js';
import type { ReloadReport } from '../egress/gateway/egress-control.js';
import type { AgentcellPaths } from '../paths.js';
import { editDiff, planAllowlistEdit } from '../policy/allowlist-edit.js';
import { PROJECT_POLICY_FILE, resolvePolicy } from '../policy/resolve-policy.js';
import type { NetworkMode } from '../policy/schema.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { liveRuns } from './cell-egress-log.js';
import { listCells } from './cell-store.js';
import { reloadCellEgress } from './egress-reload.js';

/** What `agentcell allow HOST…` did (or, on a dry run, would do). */
export interface AllowHostsResult {
  file: string;
  dryRun: boolean;
  created: boolean;
  added: string[];
  /** Given entries the file already allowed. */
  present: string[];
  /** The change as unified-diff lines (empty when nothing is added). */
  diff: string[];
  /** The workspace's effective `network.mode`: the entries matter only for `allowlist`. */
  networkMode: NetworkMode;
  /** Cells of the workspace with a run going: reloaded (or, on a dry run, to be reloaded). */
  cells: string[];
  /** One per cell in `cells`, unless a dry run. */
  reloads: CellReload[];
}

export type CellReload =
  { cell: string; report: ReloadReport } | { cell: string; error: { code: ErrorCode; message: string } };

/**
 * Adds host patterns to the workspace's own `agentcell.toml` (see planAllowlistEdit: a
 * text edit that keeps the rest of the file, refused unless provably exact), then
 * reloads every running cell of the workspace, or only `cell` when given. This runs on
 * the host: inside a cell `agentcell.toml` is read-only and no control socket is in reach,
 * so a cell can't widen itself this way.
 */
export async function allowHosts(
  paths: AgentcellPaths,
  workspace: string,
  hosts: readonly string[],
  options: { cell?: string; dryRun?: boolean } = {},
): Promise<AllowHostsResult> {
  const dryRun = options.dryRun ?? false;
  const file = writablePath(join(workspace, PROJECT_POLICY_FILE));
  const edit = planAllowlistEdit(file, hosts);
  const cells = options.cell !== undefined ? runningCells(paths, [options.cell]) : workspaceCells(paths, workspace);
  const networkMode = (await resolvePolicy({ workspace, paths })).policy.network.mode ?? 'none';
  const reloads: CellReload[] = [];
  if (!dryRun && edit.added.length > 0) write(file, edit.after, edit.created);
  if (!dryRun)
    for (const cell of cells)
      reloads.push(
        await reloadCellEgress(paths, cell).then(
          (report): CellReload => ({ cell, report }),
          (error: unknown): CellReload => ({ cell, error: errorOf(error) }),
        ),
      );
  return {
    file,
    dryRun,
    created: edit.created,
    added: edit.added,
    present: edit.present,
    diff: editDiff(edit),
    networkMode,
    cells,
    reloads,
  };
}

/** A symlinked agentcell.toml is edited where it points, not replaced by a file. */
function writablePath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

function write(file: string, text: string, created: boolean): void {
  const before = created ? undefined : statSync(file);
  writeFileAtomic(file, text, before ? before.mode & 0o7777 : 0o644);
  // Run as root on someone's workspace: the file stays theirs.
  if (before && process.getuid?.() === 0 && (before.uid !== 0 || before.gid !== 0))
    chownSync(file, before.uid, before.gid);
}

function workspaceCells(paths: AgentcellPaths, workspace: string): string[] {
  return runningCells(
    paths,
    listCells(paths)
      .filter((cell) => cell.workspace === workspace)
      .map((cell) => cell.name),
  );
}

function runningCells(paths: AgentcellPaths, names: readonly string[]): string[] {
  return names.filter((name) => liveRuns(paths, name).length > 0);
}

function errorOf(error: unknown): { code: ErrorCode; message: string } {
  if (error instanceof AgentcellError) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: String(error) };
}
