import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { AgentcellError } from '../errors.js';
import type { ProxySecret } from '../egress/rules/inspect-rules.js';
import type { Policy } from '../policy/schema.js';

/** Reads a secret's value on the host from `env:VAR`, `file:PATH` or `cmd:COMMAND`. */
export function readSecret(name: string, from: string, hostEnv: NodeJS.ProcessEnv): string {
  const colon = from.indexOf(':');
  const kind = from.slice(0, colon);
  const ref = from.slice(colon + 1);
  try {
    if (kind === 'env') {
      const value = hostEnv[ref];
      if (value === undefined) throw new Error(`${ref} is not set`);
      return value;
    }
    if (kind === 'file') return readFileSync(ref, 'utf8').replace(/\r?\n$/, '');
    return execFileSync('/bin/sh', ['-c', ref], {
      encoding: 'utf8',
      env: hostEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    }).replace(/\r?\n$/, '');
  } catch (cause) {
    throw new AgentcellError(
      'POLICY_INVALID',
      `secrets.${name}: cannot read from "${from}": ${(cause as Error).message.split('\n')[0] ?? ''}`,
      { cause },
    );
  }
}

/** The `inject = "env"` secrets as variables for the cell. */
export function envSecrets(policy: Policy, hostEnv: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, secret] of Object.entries(policy.secrets))
    if (secret.inject === 'env') env[secret.env ?? name] = readSecret(name, secret.from, hostEnv);
  return env;
}

/**
 * What the cell sees instead of an `inject = "proxy"` secret: a placeholder in the
 * variable the agent expects, so its CLI starts; the gateway replaces the header.
 */
export function proxySecretPlaceholder(name: string): string {
  return `agentcell-proxy-injected-${name}`;
}

/** The placeholders for the cell, by variable (`env`, default the secret's name). */
export function proxySecretPlaceholders(policy: Policy): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, secret] of Object.entries(policy.secrets))
    if (secret.inject === 'proxy') env[secret.env ?? name] = proxySecretPlaceholder(name);
  return env;
}

/** The `inject = "proxy"` secrets with their values, read on the host, for the gateway only. */
export function proxySecrets(policy: Policy, hostEnv: NodeJS.ProcessEnv): ProxySecret[] {
  const secrets: ProxySecret[] = [];
  for (const [name, secret] of Object.entries(policy.secrets)) {
    if (secret.inject !== 'proxy' || secret.host === undefined || secret.header === undefined) continue;
    const value = readSecret(name, secret.from, hostEnv);
    if (value.length === 0)
      throw new AgentcellError('POLICY_INVALID', `secrets.${name}: the value from "${secret.from}" is empty`);
    secrets.push({
      name,
      host: secret.host,
      header: secret.header,
      headerValue: secret.template.split('{value}').join(value),
      value,
    });
  }
  return secrets;
}
