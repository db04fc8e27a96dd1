import { AgentcellError } from '../errors.js';
import type { BackendProbe } from './backend.js';

/**
 * A run the backend could not start names the fix its probe gives, which is what `doctor`
 * prints: one place says how to fix a backend. Other errors pass through unchanged.
 */
export function withProbeFix(error: unknown, probe: () => BackendProbe): unknown {
  if (!(error instanceof AgentcellError) || error.code !== 'BACKEND_UNAVAILABLE') return error;
  const { detail, fix } = probe();
  if (fix === undefined) return error;
  return new AgentcellError(error.code, `${error.message}\n${detail}; fix: ${fix}`, { cause: error });
}
