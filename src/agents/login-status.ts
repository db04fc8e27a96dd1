import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Policy } from '../policy/schema.js';
import { removeTrees } from '../_internal/remove-trees.js';
import type { AgentAdapter, AgentName } from './agent-adapter.js';
import { credentialWays } from './credential-hint.js';
import { agentAdapter, allAgentAdapters } from './agent-registry.js';
import { loginStore } from './login-store.js';

/** One way an agent can authenticate in a cell. Values are never part of it. */
export type LoginSource =
  | { kind: 'stored-login'; path: string; updatedAt: string }
  | { kind: 'host-variable'; variable: string; injectedAs: string; host: string }
  | { kind: 'policy-secret'; secret: string; from: string; inject: string };

export interface LoginStatus {
  agent: AgentName;
  /** Something the adapter will use: a stored login, a host key, or a policy secret. */
  ready: boolean;
  sources: LoginSource[];
  /** What to do when nothing is there. */
  hint?: string;
}

/**
 * Which agents can authenticate and from where: the logins `agentcell login` stored, the
 * provider keys the adapter reads from the host's environment (injected by the gateway),
 * and the policy's `[secrets]` that the adapter uses. Reads only; never a value.
 */
export function loginStatus(configDir: string, hostEnv: NodeJS.ProcessEnv, policy?: Policy): LoginStatus[] {
  return allAgentAdapters().map((adapter) => {
    const sources = [
      ...storedLogins(configDir, adapter),
      ...hostKeys(adapter, hostEnv),
      ...policySecrets(adapter, policy),
    ];
    const status: LoginStatus = { agent: adapter.name, ready: sources.length > 0, sources };
    if (sources.length === 0) status.hint = loginHint(adapter);
    return status;
  });
}

export interface LogoutResult {
  agent: AgentName;
  /** The store's files, and the copies earlier runs left in cells' agent homes. */
  removed: string[];
}

/**
 * Forgets an agent's stored login: the store, and the copies runs put in each cell's agent
 * home, so no cell starts with it again. Host variables and policy secrets are the user's own.
 */
export function logout(
  configDir: string,
  cellsDir: string,
  name: string,
  options: { dryRun?: boolean } = {},
): LogoutResult {
  const adapter = agentAdapter(name, 'logout');
  const files = adapter.login?.files ?? [];
  const store = loginStore(configDir, adapter.name);
  const removed = files.map((f) => join(store, f)).filter((p) => existsSync(p));
  for (const cell of existsSync(cellsDir) ? readdirSync(cellsDir) : [])
    for (const f of files) {
      const copy = join(cellsDir, cell, 'agent-home', f);
      if (existsSync(copy)) removed.push(copy);
    }
  if (!options.dryRun) removeTrees([...removed, ...(existsSync(store) ? [store] : [])]);
  return { agent: adapter.name, removed };
}

function storedLogins(configDir: string, adapter: AgentAdapter): LoginSource[] {
  const store = loginStore(configDir, adapter.name);
  return (adapter.login?.files ?? []).flatMap((file) => {
    const path = join(store, file);
    const stat = statSync(path, { throwIfNoEntry: false });
    return stat ? [{ kind: 'stored-login' as const, path, updatedAt: stat.mtime.toISOString() }] : [];
  });
}

function hostKeys(adapter: AgentAdapter, hostEnv: NodeJS.ProcessEnv): LoginSource[] {
  return adapter.credentials.flatMap((c) => {
    const variable = c.hostEnv.find((v) => (hostEnv[v] ?? '') !== '');
    return variable ? [{ kind: 'host-variable' as const, variable, injectedAs: c.header, host: c.host }] : [];
  });
}

function policySecrets(adapter: AgentAdapter, policy: Policy | undefined): LoginSource[] {
  if (!policy) return [];
  return adapter.credentials.flatMap((c) => {
    const secret = policy.secrets[c.secret];
    return secret
      ? [{ kind: 'policy-secret' as const, secret: c.secret, from: describeFrom(secret.from), inject: secret.inject }]
      : [];
  });
}

function loginHint(adapter: AgentAdapter): string {
  return credentialWays(adapter).join(', or ');
}

/** `env:VAR` and `file:PATH` as they are; a `cmd:` shows its program only (its arguments may hold a token). */
function describeFrom(from: string): string {
  return from.startsWith('cmd:') ? `cmd:${from.slice(4).trim().split(/\s+/)[0] ?? ''} …` : from;
}
