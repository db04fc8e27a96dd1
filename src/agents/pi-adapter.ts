import type { AgentAdapter } from './agent-adapter.js';
import { ANTHROPIC_API_KEY, GEMINI_API_KEY, OPENAI_API_KEY } from './provider-keys.js';

/** Pi (Mario Zechner's coding agent): no permission prompts of its own, many providers. */
export const piAdapter: AgentAdapter = {
  name: 'pi',
  npmPackage: '@mariozechner/pi-coding-agent',
  version: '0.73.1',
  bin: 'pi',
  apiHosts: ['api.anthropic.com', 'api.openai.com', 'generativelanguage.googleapis.com'],
  otherHosts: [],
  credentials: [ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY],
  // Skips pi's start-up version check and package downloads.
  env: { PI_OFFLINE: '1' },
  seed: () => [],
  // Where the CLI reads user-level instructions: agentcell's brief is bound there read-only.
  briefPaths: ['.pi/agent/AGENTS.md'],
  unattendedArgs: [],
};
