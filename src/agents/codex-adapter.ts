import type { AgentAdapter } from './agent-adapter.js';
import { OPENAI_API_KEY } from './provider-keys.js';

/** OpenAI Codex: the npm package carries the native binary for each platform. */
export const codexAdapter: AgentAdapter = {
  name: 'codex',
  npmPackage: '@openai/codex',
  version: '0.169.0',
  bin: 'codex',
  apiHosts: ['api.openai.com', 'chatgpt.com'],
  otherHosts: ['auth.openai.com'],
  credentials: [
    {
      ...OPENAI_API_KEY,
      hostEnv: ['OPENAI_API_KEY', 'CODEX_API_KEY'],
      // `codex exec` reads CODEX_API_KEY, the interactive CLI OPENAI_API_KEY.
      placeholderEnv: ['CODEX_API_KEY', 'OPENAI_API_KEY'],
    },
  ],
  env: {},
  seed: ({ workspace }) => [
    {
      path: '.codex/config.toml',
      text: [
        '# Seeded by agentcell on every run: the cell is the sandbox, so Codex runs without',
        "# approvals and without a sandbox of its own (it can't nest one in a cell anyway).",
        'approval_policy = "never"',
        'sandbox_mode = "danger-full-access"',
        'check_for_update_on_startup = false',
        '',
        '[analytics]',
        'enabled = false',
        '',
        `[projects.${JSON.stringify(workspace)}]`,
        'trust_level = "trusted"',
        '',
      ].join('\n'),
    },
  ],
  // Where the CLI reads user-level instructions: agentcell's brief is bound there read-only.
  briefPaths: ['.codex/AGENTS.md'],
  unattendedArgs: [],
  login: {
    argv: ['codex', 'login', '--device-auth'],
    hosts: ['auth.openai.com', 'chatgpt.com'],
    files: ['.codex/auth.json'],
  },
};
