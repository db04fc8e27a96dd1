import type { AgentAdapter } from './agent-adapter.js';
import { ANTHROPIC_API_KEY } from './provider-keys.js';

/**
 * Claude Code. 2.1.197 is the last release whose engines allow Node 20 (npm picks it
 * for "latest" on Node 20 anyway); its package carries a native binary.
 */
export const claudeAdapter: AgentAdapter = {
  name: 'claude',
  npmPackage: '@anthropic-ai/claude-code',
  version: '2.1.197',
  bin: 'claude',
  apiHosts: ['api.anthropic.com'],
  otherHosts: ['statsig.anthropic.com', 'console.anthropic.com', 'claude.ai'],
  credentials: [
    ANTHROPIC_API_KEY,
    {
      // A subscription token from `claude setup-token` (or `agentcell login claude`).
      secret: 'CLAUDE_CODE_OAUTH_TOKEN',
      hostEnv: ['CLAUDE_CODE_OAUTH_TOKEN'],
      host: 'api.anthropic.com',
      header: 'authorization',
      template: 'Bearer {value}',
      placeholderEnv: ['CLAUDE_CODE_OAUTH_TOKEN'],
    },
  ],
  env: {
    DISABLE_AUTOUPDATER: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_ERROR_REPORTING: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    // The cell is the sandbox: Claude Code accepts bypassed permissions as root only with this.
    IS_SANDBOX: '1',
  },
  seed: ({ workspace, placeholder }) => [
    {
      path: '.claude/settings.json',
      json: {
        permissions: { defaultMode: 'bypassPermissions' },
        skipDangerousModePermissionPrompt: true,
        autoUpdates: false,
      },
    },
    {
      path: '.claude.json',
      json: {
        hasCompletedOnboarding: true,
        bypassPermissionsModeAccepted: true,
        autoUpdates: false,
        // Claude Code remembers an approved key by its last 20 characters.
        customApiKeyResponses: { approved: [placeholder('ANTHROPIC_API_KEY').slice(-20)], rejected: [] },
        projects: { [workspace]: { hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true } },
      },
    },
  ],
  // Where the CLI reads user-level instructions: agentcell's brief is bound there read-only.
  briefPaths: ['.claude/CLAUDE.md'],
  unattendedArgs: ['--dangerously-skip-permissions'],
  login: {
    argv: ['claude', 'auth', 'login'],
    hosts: ['claude.ai', 'console.anthropic.com', 'platform.claude.com'],
    files: ['.claude/.credentials.json'],
  },
};
