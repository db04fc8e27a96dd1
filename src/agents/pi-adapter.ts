import type { AgentAdapter } from './agent-adapter.js';

/** Pi (Mario Zechner's coding agent): no permission prompts of its own, many providers. */
export const piAdapter: AgentAdapter = {
  name: 'pi',
  npmPackage: '@mariozechner/pi-coding-agent',
  version: '0.73.1',
  bin: 'pi',
  apiHosts: ['api.anthropic.com', 'api.openai.com', 'generativelanguage.googleapis.com'],
  otherHosts: [],
  credentials: [
    {
      secret: 'ANTHROPIC_API_KEY',
      hostEnv: ['ANTHROPIC_API_KEY'],
      host: 'api.anthropic.com',
      header: 'x-api-key',
      placeholderEnv: ['ANTHROPIC_API_KEY'],
    },
    {
      secret: 'OPENAI_API_KEY',
      hostEnv: ['OPENAI_API_KEY'],
      host: 'api.openai.com',
      header: 'authorization',
      template: 'Bearer {value}',
      placeholderEnv: ['OPENAI_API_KEY'],
    },
    {
      secret: 'GEMINI_API_KEY',
      hostEnv: ['GEMINI_API_KEY'],
      host: 'generativelanguage.googleapis.com',
      header: 'x-goog-api-key',
      placeholderEnv: ['GEMINI_API_KEY'],
    },
  ],
  // Skips pi's start-up version check and package downloads.
  env: { PI_OFFLINE: '1' },
  seed: () => [],
  unattendedArgs: [],
};
