import { AgentcellError } from '../errors.js';
import { AGENT_NAMES, type AgentAdapter, type AgentName } from './agent-adapter.js';
import { claudeAdapter } from './claude-adapter.js';
import { codexAdapter } from './codex-adapter.js';
import { copilotAdapter } from './copilot-adapter.js';
import { geminiAdapter } from './gemini-adapter.js';
import { opencodeAdapter } from './opencode-adapter.js';
import { piAdapter } from './pi-adapter.js';

const ADAPTERS: Record<AgentName, AgentAdapter> = {
  claude: claudeAdapter,
  codex: codexAdapter,
  gemini: geminiAdapter,
  copilot: copilotAdapter,
  pi: piAdapter,
  opencode: opencodeAdapter,
};

export function isAgentName(name: string): name is AgentName {
  return (AGENT_NAMES as readonly string[]).includes(name);
}

export function agentAdapter(name: string, where = '--agent'): AgentAdapter {
  if (!isAgentName(name))
    throw new AgentcellError('USAGE', `${where}: unknown agent "${name}"; expected one of ${AGENT_NAMES.join(', ')}`);
  return ADAPTERS[name];
}

export function allAgentAdapters(): AgentAdapter[] {
  return AGENT_NAMES.map((name) => ADAPTERS[name]);
}
