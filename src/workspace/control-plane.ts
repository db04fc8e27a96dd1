import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';

/**
 * Files the host executes or trusts on the user's behalf: an agent that could write
 * them would run code on the host the next time a human commits, opens the editor,
 * enters the directory or runs a tool (DESIGN invariants 5 and 11).
 *
 * Two tiers. `refused`: accept refuses the change unless `--force` (and the files that
 * exist are read-only in the cell). `review`: accept applies the change but flags it,
 * in `diff` and in accept's output, for a human to read before running the tool.
 * docs/security.md has this table for users; keep the two in step.
 */
export type ControlTier = 'refused' | 'review';

export interface ControlRule {
  /**
   * `/`-separated; `**` matches any number of directories (so `**\/.envrc` matches one
   * at any depth), `*` any part of a name. A rule covers the path it names and
   * everything under it.
   */
  pattern: string;
  tier: ControlTier;
  /** What runs it. */
  why: string;
}

export const CONTROL_PLANE_RULES: readonly ControlRule[] = [
  { pattern: '**/agentcell.toml', tier: 'refused', why: 'agentcell reads its policy from it' },
  { pattern: '**/.envrc', tier: 'refused', why: 'direnv runs it on cd' },
  { pattern: '**/.husky', tier: 'refused', why: 'husky git hooks' },
  { pattern: '**/.pre-commit-config.yaml', tier: 'refused', why: 'pre-commit runs its hooks on commit' },
  { pattern: '**/.mcp.json', tier: 'refused', why: 'agents start the MCP servers it names' },
  { pattern: '**/.claude/settings.json', tier: 'refused', why: 'Claude Code runs its hooks and MCP servers' },
  { pattern: '**/.claude/settings.local.json', tier: 'refused', why: 'Claude Code runs its hooks and MCP servers' },
  { pattern: '**/.claude/hooks', tier: 'refused', why: 'Claude Code hook scripts' },
  { pattern: '**/.gemini/settings.json', tier: 'refused', why: 'Gemini CLI runs its hooks and MCP servers' },
  { pattern: '**/opencode.json', tier: 'refused', why: 'opencode starts the MCP servers and plugins it names' },
  { pattern: '**/opencode.jsonc', tier: 'refused', why: 'opencode starts the MCP servers and plugins it names' },
  { pattern: '**/.vscode/settings.json', tier: 'refused', why: 'the editor runs the tools it configures' },
  { pattern: '**/.vscode/tasks.json', tier: 'refused', why: 'the editor can run tasks on folder open' },
  { pattern: '**/.npmrc', tier: 'refused', why: 'npm runs node-options / script-shell from it' },
  { pattern: '**/.yarnrc.yml', tier: 'refused', why: 'yarn runs the yarnPath it names' },
  { pattern: '**/.pnpmfile.cjs', tier: 'refused', why: 'pnpm runs it on install' },
  { pattern: '**/package.json', tier: 'review', why: 'npm runs its scripts (flagged when scripts change)' },
  { pattern: '**/.vscode', tier: 'review', why: 'editor configuration (launch, extensions)' },
  { pattern: '**/.claude', tier: 'review', why: 'Claude Code commands and agents' },
  { pattern: '**/.gemini', tier: 'review', why: 'Gemini CLI configuration' },
  { pattern: '**/.opencode', tier: 'review', why: 'opencode plugins and commands' },
  { pattern: '**/.codex', tier: 'review', why: 'Codex configuration' },
  { pattern: '**/.cursor', tier: 'review', why: 'Cursor configuration and MCP servers' },
  { pattern: '**/.lintstagedrc*', tier: 'review', why: 'lint-staged runs it on commit' },
  { pattern: '**/lint-staged.config.*', tier: 'review', why: 'lint-staged runs it on commit' },
  { pattern: '**/Makefile', tier: 'review', why: 'make runs it' },
  { pattern: '**/makefile', tier: 'review', why: 'make runs it' },
  { pattern: '**/GNUmakefile', tier: 'review', why: 'make runs it' },
  { pattern: '**/*.mk', tier: 'review', why: 'make includes it' },
  { pattern: '**/justfile', tier: 'review', why: 'just runs it' },
  { pattern: '**/Taskfile.yml', tier: 'review', why: 'task runs it' },
  { pattern: '**/.tool-versions', tier: 'review', why: 'asdf / mise install and run what it names' },
  { pattern: '**/mise.toml', tier: 'review', why: 'mise runs its hooks and tasks' },
  { pattern: '**/.mise.toml', tier: 'review', why: 'mise runs its hooks and tasks' },
  { pattern: '**/.gitattributes', tier: 'review', why: 'selects git filters and diff drivers' },
  { pattern: '**/.gitmodules', tier: 'review', why: 'git fetches the submodules it names' },
  { pattern: '.github/workflows', tier: 'review', why: 'CI runs them with the repo’s secrets' },
  { pattern: '.devcontainer', tier: 'review', why: 'devcontainer tools run its commands on the host' },
];

/**
 * What of the workspace's own `.git` directory is data git never executes: everything
 * else there (config, hooks, info, commondir, worktrees, modules, a rebase's todo with
 * its `exec` lines, …) is the repo's control plane. A `.git` anywhere below the root is
 * a nested repository, whose config git honours in that directory: refused whole.
 */
const GIT_DATA: readonly string[] = [
  'objects',
  'refs',
  'logs',
  'index',
  'HEAD',
  'ORIG_HEAD',
  'FETCH_HEAD',
  'MERGE_HEAD',
  'MERGE_MSG',
  'MERGE_MODE',
  'CHERRY_PICK_HEAD',
  'REVERT_HEAD',
  'AUTO_MERGE',
  'COMMIT_EDITMSG',
  'packed-refs',
  'description',
  'shallow',
  'lfs',
];
/** objects/info/alternates makes git read objects from anywhere on the host. */
const GIT_DATA_EXCEPTIONS = /^\.git\/objects\/info\/(?:http-)?alternates$/;

export interface ControlFlag {
  tier: ControlTier;
  reason: string;
}

/**
 * The control plane of one workspace: the fixed rules, plus what the host repo's own
 * git config names inside it (the `core.hooksPath` directory; scripts that filters,
 * diff drivers, fsmonitor, aliases and credential helpers run; included config files),
 * read with the host's git from the host's config, never the cell's.
 */
export class ControlPlane {
  readonly #matchers = CONTROL_PLANE_RULES.map((rule) => ({ rule, regex: patternRegex(rule.pattern) }));

  constructor(
    /** Workspace-relative paths the host's git config makes executable, with the key that does. */
    readonly fromGitConfig: ReadonlyMap<string, string> = new Map(),
  ) {}

  /** Whether (and why) a workspace-relative path is, or lies under, a control-plane path. */
  classify(path: string): ControlFlag | undefined {
    const git = gitControl(path);
    if (git) return { tier: 'refused', reason: `${git}; accept with --force after review` };
    for (const [configured, key] of this.fromGitConfig)
      if (path === configured || path.startsWith(`${configured}/`))
        return {
          tier: 'refused',
          reason: `run by git (${key} in the host's git config); accept with --force after review`,
        };
    for (const { rule, regex } of this.#matchers)
      if (regex.test(path))
        return {
          tier: rule.tier,
          reason:
            rule.tier === 'refused'
              ? `control-plane file (${rule.why}); accept with --force after review`
              : `review before use: ${rule.why}`,
        };
    return undefined;
  }
}

function gitControl(path: string): string | undefined {
  const parts = path.split('/');
  const nested = parts.indexOf('.git', 1);
  if (nested > 0) return `inside a nested git repository (${parts.slice(0, nested + 1).join('/')})`;
  if (parts[0] !== '.git') return undefined;
  if (parts.length === 1 || !GIT_DATA.includes(parts[1]!) || GIT_DATA_EXCEPTIONS.test(path))
    return 'git control plane (.git is data only for objects, refs, logs and the index)';
  return undefined;
}

/** `**` any directories, `*` within a name; matches the path or any path under it. */
function patternRegex(pattern: string): RegExp {
  const body = pattern
    .split('/')
    .map((part) =>
      part === '**' ? '(?:.+/)?' : `${part.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}/`,
    )
    .join('');
  return new RegExp(`^${body.slice(0, -1)}(?:/|$)`);
}

/** Config keys whose value is a command or a path git runs or reads as config. */
const EXECUTING_KEYS =
  /^(?:core\.(?:hookspath|fsmonitor|sshcommand|editor|pager|askpass|attributesfile)|sequence\.editor|gpg\.(?:[^.]+\.)?program|credential\.(?:.+\.)?helper|filter\..+\.(?:clean|smudge|process)|diff\..+\.(?:textconv|command)|merge\..+\.driver|alias\..+|include\.path|includeif\..+\.path)$/i;

/**
 * Reads the host repo's git config (with the host's git, in the host workspace) for the
 * paths inside the workspace that it makes git execute or read as config.
 * A workspace that is not in a git repository (or a host without git) has none.
 */
export function readControlPlane(workspace: string): ControlPlane {
  const git = (args: string[]): string | undefined => {
    const result = spawnSync('git', ['-C', workspace, ...args], {
      encoding: 'utf8',
      env: { ...process.env, GIT_DIR: undefined, GIT_WORK_TREE: undefined, GIT_CONFIG_PARAMETERS: undefined },
    });
    return result.status === 0 ? result.stdout : undefined;
  };
  const found = new Map<string, string>();
  const add = (absolute: string, key: string): void => {
    const rel = relative(workspace, absolute);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return;
    const path = rel.split(sep).join('/');
    if (!found.has(path)) found.set(path, key);
  };
  const located = git(['rev-parse', '--show-toplevel', '--git-path', 'hooks']);
  if (located === undefined) return new ControlPlane(found);
  const [top = workspace, hooks] = located.split('\n');
  if (hooks) add(resolve(workspace, hooks), 'core.hooksPath');
  const fields = (git(['config', '-z', '--list', '--show-origin']) ?? '').split('\0');
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const origin = fields[i]!;
    const newline = fields[i + 1]!.indexOf('\n');
    const key = newline < 0 ? fields[i + 1]! : fields[i + 1]!.slice(0, newline);
    const value = newline < 0 ? '' : fields[i + 1]!.slice(newline + 1);
    if (!EXECUTING_KEYS.test(key)) continue;
    const isInclude = /^include(?:if\..+)?\.path$/i.test(key);
    // Hooks, filters and aliases run at the top of the work tree; includes are relative to their file.
    const base = isInclude && origin.startsWith('file:') ? dirname(resolve(workspace, origin.slice(5))) : top;
    for (const token of value.split(/[\s'"=;&|()]+/))
      if (token.includes('/') || token.startsWith('.')) add(resolve(base, token.replace(/^!/, '')), key);
  }
  return new ControlPlane(found);
}

/**
 * The refused-tier paths that exist in a workspace, relative: what the cell gets
 * read-only. Of `.git`, all but its data; in submodules' and worktrees' git dirs, their
 * config, hooks, info and commondir (the rest is data the cell's git writes).
 */
export function existingControlPlane(workspace: string): string[] {
  const found = ROOT_CONTROL_PATHS.filter((p) => existsSync(join(workspace, p)));
  for (const name of readdirOrEmpty(join(workspace, '.git'))) {
    if (name === 'modules' || name === 'worktrees') collectNested(workspace, `.git/${name}`, found, 0);
    else if (!GIT_DATA.includes(name)) found.push(`.git/${name}`);
  }
  return found;
}

function collectNested(workspace: string, dir: string, found: string[], depth: number): void {
  if (depth > 6) return;
  for (const name of readdirOrEmpty(join(workspace, dir))) {
    const rel = `${dir}/${name}`;
    if (['hooks', 'info', 'config', 'config.worktree', 'commondir'].includes(name)) found.push(rel);
    else if (!GIT_DATA.includes(name)) collectNested(workspace, rel, found, depth + 1);
  }
}

/** The refused rules' paths at the workspace root (finding those deeper would cost a walk of the tree). */
const ROOT_CONTROL_PATHS = CONTROL_PLANE_RULES.filter((r) => r.tier === 'refused').map((r) =>
  r.pattern.replace(/^\*\*\//, ''),
);

function readdirOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
