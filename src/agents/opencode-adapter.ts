import type { AgentAdapter } from './agent-adapter.js';
import { ANTHROPIC_API_KEY, OPENAI_API_KEY } from './provider-keys.js';

/** opencode (npm `opencode-ai`): the package carries the native binary. */
export const opencodeAdapter: AgentAdapter = {
  name: 'opencode',
  npmPackage: 'opencode-ai',
  version: '1.18.33',
  bin: 'opencode',
  apiHosts: ['api.anthropic.com', 'api.openai.com'],
  otherHosts: ['models.dev'],
  credentials: [ANTHROPIC_API_KEY, OPENAI_API_KEY],
  env: { OPENCODE_DISABLE_AUTOUPDATE: 'true', OPENCODE_DISABLE_SHARE: 'true' },
  seed: () => [
    {
      path: '.config/opencode/opencode.json',
      json: { autoupdate: false, share: 'disabled', permission: { edit: 'allow', bash: 'allow', webfetch: 'allow' } },
    },
  ],
  // Where the CLI reads user-level instructions: agentcell's brief is bound there read-only.
  briefPaths: ['.config/opencode/AGENTS.md'],
  unattendedArgs: [],
  login: {
    argv: ['opencode', 'auth', 'login'],
    hosts: ['console.anthropic.com', 'claude.ai', 'auth.openai.com'],
    files: ['.local/share/opencode/auth.json'],
  },
};
