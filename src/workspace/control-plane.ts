import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Files the host executes or trusts on the user's behalf: an agent that could write
 * them would run code on the host the next time a human commits, opens the editor or
 * runs agentcell. They are read-only in the cell, and accept refuses changes to them
 * unless forced (DESIGN invariant 5).
 */
export const CONTROL_PLANE_PATHS: readonly string[] = [
  '.git/hooks',
  '.git/config',
  '.git/config.worktree',
  '.git/info',
  'agentcell.toml',
  '.envrc',
  '.husky',
  '.pre-commit-config.yaml',
  '.mcp.json',
  '.claude/settings.json',
  '.claude/settings.local.json',
  '.vscode/settings.json',
  '.vscode/tasks.json',
];

/** Submodules and worktrees carry their own hooks and config under .git/. */
const NESTED_GIT_CONTROL = /^\.git\/(?:modules|worktrees)\/(?:.+\/)?(?:hooks|info|config|config\.worktree)(?:\/|$)/;

/** Whether a workspace-relative path is, or lies under, a control-plane path. */
export function isControlPlanePath(path: string): boolean {
  return CONTROL_PLANE_PATHS.some((p) => path === p || path.startsWith(`${p}/`)) || NESTED_GIT_CONTROL.test(path);
}

/** The control-plane paths that exist in a workspace, relative: what the cell gets read-only. */
export function existingControlPlane(workspace: string): string[] {
  const found = CONTROL_PLANE_PATHS.filter((p) => existsSync(join(workspace, p)));
  for (const nested of ['.git/modules', '.git/worktrees']) collectNested(workspace, nested, found, 0);
  return found;
}

function collectNested(workspace: string, dir: string, found: string[], depth: number): void {
  if (depth > 6) return;
  let names: string[];
  try {
    names = readdirSync(join(workspace, dir));
  } catch {
    return;
  }
  for (const name of names) {
    const rel = `${dir}/${name}`;
    if (['hooks', 'info', 'config', 'config.worktree'].includes(name)) found.push(rel);
    else collectNested(workspace, rel, found, depth + 1);
  }
}
