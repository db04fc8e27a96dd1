import { homedir } from 'node:os';
import { join } from 'node:path';

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
