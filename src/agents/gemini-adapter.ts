import type { AgentAdapter } from './agent-adapter.js';
import { GEMINI_API_KEY } from './provider-keys.js';

/** Google's Gemini CLI, a Node bundle. */
export const geminiAdapter: AgentAdapter = {
  name: 'gemini',
  npmPackage: '@google/gemini-cli',
  version: '0.61.0',
  bin: 'gemini',
  apiHosts: ['generativelanguage.googleapis.com'],
  otherHosts: ['oauth2.googleapis.com', 'cloudcode-pa.googleapis.com'],
  credentials: [{ ...GEMINI_API_KEY, hostEnv: ['GEMINI_API_KEY', 'GOOGLE_API_KEY'] }],
  env: { GEMINI_CLI_NO_RELAUNCH: 'true' },
  seed: () => [
    {
      path: '.gemini/settings.json',
      json: {
        general: { disableAutoUpdate: true, disableUpdateNag: true },
        privacy: { usageStatisticsEnabled: false },
        telemetry: { enabled: false },
        security: { auth: { selectedType: 'gemini-api-key' }, folderTrust: { enabled: false } },
      },
    },
  ],
  // Where the CLI reads user-level instructions: agentcell's brief is bound there read-only.
  briefPaths: ['.gemini/GEMINI.md'],
  unattendedArgs: ['--approval-mode', 'yolo'],
  login: {
    argv: ['gemini'],
    hosts: ['accounts.google.com', 'oauth2.googleapis.com'],
    files: ['.gemini/oauth_creds.json'],
  },
};
