import type { AgentCredential } from './agent-adapter.js';

/**
 * The API keys of the providers several agents talk to, injected by the gateway. An
 * adapter uses them as they are, or widens where it looks on the host and which
 * variables get the placeholder (its CLI's own names).
 */
export const ANTHROPIC_API_KEY: AgentCredential = {
  secret: 'ANTHROPIC_API_KEY',
  hostEnv: ['ANTHROPIC_API_KEY'],
  host: 'api.anthropic.com',
  header: 'x-api-key',
  placeholderEnv: ['ANTHROPIC_API_KEY'],
};

export const OPENAI_API_KEY: AgentCredential = {
  secret: 'OPENAI_API_KEY',
  hostEnv: ['OPENAI_API_KEY'],
  host: 'api.openai.com',
  header: 'authorization',
  template: 'Bearer {value}',
  placeholderEnv: ['OPENAI_API_KEY'],
};

export const GEMINI_API_KEY: AgentCredential = {
  secret: 'GEMINI_API_KEY',
  hostEnv: ['GEMINI_API_KEY'],
  host: 'generativelanguage.googleapis.com',
  header: 'x-goog-api-key',
  placeholderEnv: ['GEMINI_API_KEY'],
};
