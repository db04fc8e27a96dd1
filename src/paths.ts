import { homedir } from 'node:os';
import { join } from 'node:path';
import { neutralRuntimeDir } from './_internal/neutral-dir.js';

export interface AgentcellPaths {
  /** Cells, runs and other state. */
  state: string;
  /** User policy (`config.toml`) and keys. */
  config: string;
}

/**
 * Where agentcell keeps its files. `AGENTCELL_HOME` overrides both XDG locations,
 * which is how tests keep a real user's state out of reach.
 */
export function agentcellPaths(env: NodeJS.ProcessEnv = process.env): AgentcellPaths {
  const override = env['AGENTCELL_HOME'];
  if (override) return { state: join(override, 'state'), config: join(override, 'config') };
  const home = env['HOME'] ?? homedir();
  return {
    state: join(env['XDG_STATE_HOME'] || join(home, '.local', 'state'), 'agentcell'),
    config: join(env['XDG_CONFIG_HOME'] || join(home, '.config'), 'agentcell'),
  };
}

/** One of agentcell's own directories, which no cell may see. */
export interface OwnDir {
  path: string;
  /** In use by this process: it may be created while a cell runs (the signing key on a first run). */
  active: boolean;
}

/**
 * Every directory agentcell keeps keys, logins, cells, config or a run's sockets in: the ones this
 * process uses (`paths`, and AGENTCELL_HOME around them), and the default locations
 * another invocation (without AGENTCELL_HOME, with another HOME or XDG dirs) would use.
 */
export function agentcellOwnDirs(paths: AgentcellPaths, env: NodeJS.ProcessEnv = process.env): OwnDir[] {
  const override = env['AGENTCELL_HOME'];
  // And the /dev/shm dir of egress sockets and staged copies (the cell's ssh key among them): neutral-dir.ts.
  const neutral = neutralRuntimeDir();
  const active = [...(override ? [override] : []), paths.config, paths.state, ...(neutral ? [neutral] : [])];
  const homes = [env['HOME'], homedir()].filter((home): home is string => Boolean(home));
  const others: string[] = [];
  for (const home of homes)
    for (const alternative of [
      agentcellPaths({ ...env, HOME: home, AGENTCELL_HOME: '' }),
      agentcellPaths({ HOME: home }),
    ])
      others.push(alternative.config, alternative.state);
  const dirs = new Map<string, OwnDir>();
  for (const path of active) dirs.set(path, { path, active: true });
  for (const path of others) if (!dirs.has(path)) dirs.set(path, { path, active: false });
  return [...dirs.values()];
}
