import { join } from 'node:path';
import type { AgentName } from './agent-adapter.js';

/** agentcell's own store for an agent's login (`<config>/credentials/<agent>`, 0700): never a workspace. */
export function loginStore(configDir: string, agent: AgentName): string {
  return join(configDir, 'credentials', agent);
}
