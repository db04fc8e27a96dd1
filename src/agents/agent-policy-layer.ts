import type { PolicyLayer } from '../policy/policy-layer.js';
import { usesGateway } from '../_internal/vocabulary.js';
import { proxySecretPlaceholder } from '../cell/resolve-secrets.js';
import type { AgentAdapter } from './agent-adapter.js';

export function agentLayerSource(adapter: AgentAdapter): string {
  return `agent ${adapter.name}`;
}

/**
 * What an adapter adds to the policy, as a layer of its own so `policy explain` names
 * it ("agent claude"). It sits just above the built-in defaults: anything the user, the
 * project or a flag says wins, and host lists accumulate. Provider hosts are allowed and
 * inspected; a credential set on the host (or declared in a policy file under the same
 * secret name) is injected by the gateway, and the cell gets a placeholder in its place.
 * When another layer turns the gateway off (`--network none`), no credential is added.
 */
export function agentPolicyLayer(
  adapter: AgentAdapter,
  hostEnv: NodeJS.ProcessEnv,
  declaredSecrets: ReadonlySet<string>,
  /** network.mode as the other layers state it: without the gateway there is nothing to inject. */
  networkMode: unknown = undefined,
): PolicyLayer {
  const secrets: Record<string, Record<string, string>> = {};
  const env: Record<string, string> = { ...adapter.env };
  const gateway = networkMode === undefined || usesGateway(networkMode);
  for (const credential of gateway ? adapter.credentials : []) {
    const variable = credential.hostEnv.find((name) => hostEnv[name]);
    if (variable === undefined && !declaredSecrets.has(credential.secret)) continue;
    secrets[credential.secret] = {
      ...(variable !== undefined ? { from: `env:${variable}` } : {}),
      inject: 'proxy',
      host: credential.host,
      header: credential.header,
      ...(credential.template !== undefined ? { template: credential.template } : {}),
    };
    for (const name of credential.placeholderEnv) env[name] = proxySecretPlaceholder(credential.secret);
  }
  return {
    source: agentLayerSource(adapter),
    values: {
      network: {
        mode: 'allowlist',
        allow: [...adapter.apiHosts, ...adapter.otherHosts],
        inspect: adapter.apiHosts,
      },
      ...(Object.keys(secrets).length > 0 ? { secrets } : {}),
      env,
    },
  };
}
