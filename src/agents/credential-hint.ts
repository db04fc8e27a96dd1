import type { Policy } from '../policy/schema.js';
import { usesGateway } from '../_internal/vocabulary.js';
import type { AgentAdapter } from './agent-adapter.js';

/**
 * Why an agent will likely ask to log in, and what to do, when it has nothing to
 * authenticate with: no credential of its adapter in the policy's secrets (set from a
 * host variable or declared) and no login stored by `agentcell login`. Undefined when it has one.
 */
export function missingCredentialHint(adapter: AgentAdapter, policy: Policy, storedLogins: number): string | undefined {
  if (storedLogins > 0 || adapter.credentials.length === 0) return undefined;
  if (adapter.credentials.some((c) => policy.secrets[c.secret] !== undefined)) return undefined;
  const ways = credentialWays(adapter);
  const network = usesGateway(policy.network.mode)
    ? ''
    : ` (and keep network.mode = "allowlist": it is "${policy.network.mode}")`;
  return `${adapter.name} has no credentials in this cell: ${ways.join(', or ')}${network}`;
}

/** How a user gives an agent credentials: its login, or its provider key variables on the host. */
export function credentialWays(adapter: AgentAdapter): string[] {
  const variables = [...new Set(adapter.credentials.flatMap((c) => c.hostEnv))];
  return [
    ...(adapter.login ? [`run agentcell login ${adapter.name}`] : []),
    ...(variables.length > 0 ? [`set ${variables.join(' or ')} in this shell`] : []),
  ];
}
