import { AgentcellError } from '../errors.js';
import { agentcellInstallDir } from '../_internal/install-dir.js';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** The only host variables that reach a cell by default: none of them carries a credential. */
const PASSED_THROUGH = ['PATH', 'TERM', 'LANG', 'TZ', 'COLORTERM', 'NO_COLOR'] as const;

/**
 * git in a cell compares the host's index with files the cell sees under another owner and
 * device (user namespace, overlay), so with git's default stat check every `git status`
 * re-reads and hashes the whole tree (1.85× the host's time at 100,000 files). `minimal`
 * checks what the cell sees unchanged: whole-second mtime and size; git's racy-entry rule
 * still re-reads files changed in the index's own second. A policy `[env]` can replace it.
 */
const CELL_GIT_CONFIG: Record<string, string> = {
  GIT_CONFIG_COUNT: '1',
  GIT_CONFIG_KEY_0: 'core.checkStat',
  GIT_CONFIG_VALUE_0: 'minimal',
};

/** Set in every cell's environment. */
export const IN_CELL_MARKER = 'AGENTCELL_IN_CELL';

export interface CellEnvironmentInput {
  hostEnv: NodeJS.ProcessEnv;
  home: string;
  /** `[env]` from the policy (including `--env NAME=VALUE`). */
  policyEnv: Record<string, string>;
  /** `--env NAME`: copied from the host by explicit request. */
  passEnv: readonly string[];
  /** Secrets with inject = "env", already resolved. */
  secretEnv: Record<string, string>;
  /** network = allowlist: the proxy variables (src/egress/cell/proxy-environment.ts); they win over everything. */
  proxyEnv?: Record<string, string>;
}

/**
 * The cell's environment is built, never inherited (DESIGN "Environment"): tokens in
 * the host's environment reach the cell only when named.
 */
export function buildCellEnvironment(input: CellEnvironmentInput): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of PASSED_THROUGH) {
    const value = input.hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  for (const [name, value] of Object.entries(input.hostEnv))
    if ((name === 'LC_ALL' || name.startsWith('LC_')) && value !== undefined) env[name] = value;
  env['PATH'] = cellPath(env['PATH'], input.home);
  env['HOME'] = input.home;
  Object.assign(env, CELL_GIT_CONFIG);
  Object.assign(env, input.policyEnv);
  for (const name of input.passEnv) {
    const value = input.hostEnv[name];
    if (value === undefined)
      throw new AgentcellError('USAGE', `--env ${name}: ${name} is not set in agentcell's environment`);
    env[name] = value;
  }
  Object.assign(env, input.secretEnv);
  // Applied last: a policy or host value can't point the cell's tools past the bridge.
  Object.assign(env, input.proxyEnv);
  // Tells agentcell run inside a cell that it is there (publish refuses); a guard against
  // mistakes, not a boundary: the cell holds no host credentials to push with anyway.
  env[IN_CELL_MARKER] = '1';
  return env;
}

/**
 * The host's PATH without the entries that name the host's layout and lead nowhere in the
 * cell: those inside the caller's home (an empty tmpfs in the cell) or agentcell's install
 * dir (its `node_modules/.bin` when npm or npx started it), and relative ones.
 */
function cellPath(hostPath: string | undefined, home: string): string {
  const hidden = [home, agentcellInstallDir()].filter((d): d is string => d !== undefined && d !== '/');
  const kept = (hostPath ?? '')
    .split(':')
    .filter((dir) => dir.startsWith('/') && !hidden.some((h) => dir === h || dir.startsWith(`${h}/`)));
  return kept.length > 0 ? kept.join(':') : DEFAULT_PATH;
}
