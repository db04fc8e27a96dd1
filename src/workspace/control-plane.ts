/**
 * Files the host executes or trusts on the user's behalf: an agent that could write
 * them would run code on the host the next time a human commits, opens the editor or
 * runs agentcell. They are read-only in the cell (DESIGN invariant 5).
 */
export const CONTROL_PLANE_PATHS: readonly string[] = [
  '.git/hooks',
  '.git/config',
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

/** Whether a workspace-relative path is, or lies under, a control-plane path. */
export function isControlPlanePath(path: string): boolean {
  return CONTROL_PLANE_PATHS.some((p) => path === p || path.startsWith(`${p}/`));
}
