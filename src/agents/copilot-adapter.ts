import type { AgentAdapter } from './agent-adapter.js';

/** GitHub Copilot CLI: a Node loader that starts the platform binary from the package. */
export const copilotAdapter: AgentAdapter = {
  name: 'copilot',
  npmPackage: '@github/copilot',
  version: '1.0.102',
  bin: 'copilot',
  apiHosts: ['api.githubcopilot.com', 'api.individual.githubcopilot.com', 'api.business.githubcopilot.com'],
  otherHosts: ['api.github.com', 'github.com'],
  credentials: [
    {
      secret: 'COPILOT_GITHUB_TOKEN',
      hostEnv: ['COPILOT_GITHUB_TOKEN', 'GH_TOKEN', 'GITHUB_TOKEN'],
      host: 'api.github.com',
      header: 'authorization',
      template: 'token {value}',
      placeholderEnv: ['COPILOT_GITHUB_TOKEN'],
    },
  ],
  env: { COPILOT_AUTO_UPDATE: 'false' },
  seed: ({ workspace }) => [
    { path: '.copilot/config.json', json: { trusted_folders: [workspace], banner: 'never', auto_update: false } },
  ],
  // Where the CLI reads user-level instructions: agentcell's brief is bound there read-only.
  briefPaths: ['.copilot/copilot-instructions.md'],
  unattendedArgs: ['--allow-all-tools', '--allow-all-paths', '--disable-client-telemetry'],
  login: { argv: ['copilot', 'login'], hosts: ['github.com', 'api.github.com'], files: ['.copilot/config.json'] },
};
