import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import type { ExtraMount } from '../backends/backend.js';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { AgentcellError } from '../errors.js';
import type { Policy } from '../policy/schema.js';
import { proxySecretPlaceholder } from '../cell/resolve-secrets.js';
import type { AgentAdapter, AgentName, SeedFile } from './agent-adapter.js';
import { loginStore } from './login-store.js';
import { agentBrief, BRIEF_FILE } from './agent-brief.js';
import { agentAdapter } from './agent-registry.js';
import {
  hostToolchain,
  installToolchain,
  npmToolchain,
  resolveNpmVersion,
  toolchainsRoot,
  type AgentToolchain,
} from './agent-toolchain.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { AgentHome } from './agent-home.js';
import { missingCredentialHint } from './credential-hint.js';

/** An agent run, decided before anything runs (`--dry-run` shows it; nothing is installed or written yet). */
export interface PreparedAgent {
  name: AgentName;
  toolchain: AgentToolchain;
  /**
   * The host dir bound as the cell's home (`<cell>/agent-home`): the agent's config and
   * sessions persist with the cell, and the host's home stays out of reach.
   */
  home: string;
  seeds: SeedFile[];
  /** Files `agentcell login` stored for this agent, copied into the home before each run. */
  logins: { source: string; path: string }[];
  /** Where the agent's login files live in agentcell's store, and which (home-relative) they are. */
  loginStore: { dir: string; files: string[] };
  /** Set when the agent has nothing to authenticate with: what to do about it. */
  credentialHint?: string;
  /** The cell brief (`[agent] brief`): written to this host file, bound read-only into the home. */
  brief?: { file: string; text: string };
}

export interface AgentCellParts {
  agent: PreparedAgent;
  mounts: ExtraMount[];
  /** Prepended to the cell's PATH. */
  path: string;
  argv: string[];
}

export interface AgentRequest {
  policy: Policy;
  /** Where agent.name came from, for errors. */
  nameSource: string;
  stateDir: string;
  /** agentcell's config dir: the credential store of `agentcell login` is under it. */
  configDir: string;
  cellDir: string;
  /** The home path inside the cell. */
  cellHome: string;
  workspace: string;
  hostEnv: NodeJS.ProcessEnv;
  /** The user's arguments for the agent (after `--`). */
  argv: string[];
}

/** The mounts, PATH and argv that put an agent's CLI in a cell, unattended. */
export async function prepareAgent(request: AgentRequest): Promise<AgentCellParts> {
  const { policy } = request;
  const name = policy.agent.name;
  if (name === undefined) throw new Error('prepareAgent needs agent.name');
  const adapter = agentAdapter(name, `agent.name (from ${request.nameSource})`);
  let toolchain: AgentToolchain;
  if (policy.agent.source === 'host') {
    if (policy.agent.version !== undefined)
      throw new AgentcellError(
        'POLICY_INVALID',
        'agent.version: only for agent.source = "npm" (the host binary is what it is)',
      );
    toolchain = hostToolchain(adapter, request.hostEnv);
  } else {
    const version = await resolveNpmVersion(adapter.npmPackage, policy.agent.version ?? adapter.version);
    toolchain = npmToolchain(adapter, version, toolchainsRoot(request.stateDir, request.hostEnv));
  }
  const home = join(request.cellDir, 'agent-home');
  const logins = storedLogins(adapter, request.configDir);
  const loginFiles = { dir: loginStore(request.configDir, adapter.name), files: [...(adapter.login?.files ?? [])] };
  const credentialHint = missingCredentialHint(adapter, policy, logins.length);
  const brief = policy.agent.brief
    ? { file: join(request.cellDir, 'agent-brief.md'), text: agentBrief(policy) }
    : undefined;
  return {
    agent: {
      name: adapter.name,
      toolchain,
      home,
      seeds: adapter.seed({ workspace: request.workspace, placeholder: proxySecretPlaceholder }),
      logins,
      loginStore: loginFiles,
      ...(credentialHint !== undefined ? { credentialHint } : {}),
      ...(brief ? { brief } : {}),
    },
    mounts: [
      { source: home, target: request.cellHome, mode: 'rw', own: true },
      { source: toolchain.dir, target: toolchain.cellDir, mode: 'ro', directory: true },
      // Bound over the rw home, read-only: the agent reads it and can't rewrite its own brief.
      ...(brief
        ? [BRIEF_FILE, ...adapter.briefPaths].map((path) => ({
            source: brief.file,
            target: posix.join(request.cellHome, path),
            mode: 'ro' as const,
          }))
        : []),
    ],
    path: posix.dirname(toolchain.executable),
    argv: [toolchain.executable, ...adapter.unattendedArgs, ...policy.agent.args, ...request.argv],
  };
}

/**
 * What a run does before its cell starts: install the toolchain if the cache lacks it
 * (progress on `progress`), make the agent's home and seed its native config there.
 */
export async function readyAgent(agent: DeepReadonly<PreparedAgent>, progress: (line: string) => void): Promise<void> {
  await installToolchain(agent.toolchain, progress);
  // A run agentcell didn't see end (killed) may have left a refreshed login in the home.
  settleAgentLogins(agent);
  const home = new AgentHome(agent.home);
  try {
    for (const login of agent.logins)
      if (existsSync(login.source)) home.write(login.path, readFileSync(login.source), 0o600); // else logged out since
    for (const seed of agent.seeds) writeSeed(home, seed);
  } finally {
    home.close();
  }
  // Bound into the home from this file (read-only), so it is written before the cell starts
  // (written again before every run: no fsync).
  if (agent.brief) writeFileAtomic(agent.brief.file, agent.brief.text, 0o644, { durable: false });
}

/**
 * After a run: a login the agent created or refreshed in the cell's home is written back
 * to agentcell's store, and the copy leaves the home, so the store stays its only copy
 * between runs (never the workspace, never cell state). Read without following links:
 * a symlink the agent planted there is not a login. Returns the store files written.
 */
export function settleAgentLogins(agent: DeepReadonly<PreparedAgent>): string[] {
  if (!existsSync(agent.home)) return [];
  const written: string[] = [];
  const home = new AgentHome(agent.home);
  try {
    for (const file of agent.loginStore.files) {
      const content = home.read(file);
      if (content !== undefined) {
        const stored = join(agent.loginStore.dir, file);
        if (!existsSync(stored) || !readFileSync(stored).equals(content)) {
          makeDirs(dirname(stored), 0o700);
          writeFileAtomic(stored, content, 0o600);
          written.push(stored);
        }
      }
      home.remove(file);
    }
  } finally {
    home.close();
  }
  return written;
}

/** Why an agent run's assurance is lower: a stored login is a credential the cell can read. */
export function agentAssuranceReasons(agent: PreparedAgent): string[] {
  return agent.logins.length > 0
    ? [`agentcell login ${agent.name}: its credential is readable in the cell (API keys are injected instead)`]
    : [];
}

function storedLogins(adapter: AgentAdapter, configDir: string): { source: string; path: string }[] {
  const store = loginStore(configDir, adapter.name);
  return (adapter.login?.files ?? [])
    .map((path) => ({ source: join(store, path), path }))
    .filter((f) => existsSync(f.source));
}

/** JSON seeds are merged into what the agent wrote earlier; agentcell's keys win. */
function writeSeed(home: AgentHome, seed: SeedFile): void {
  let text: string;
  if ('json' in seed) {
    let existing: Record<string, unknown> = {};
    try {
      // The agent's own file, not agentcell state: absent or broken by the agent, it starts over.
      existing = JSON.parse(home.read(seed.path)?.toString('utf8') ?? '{}') as Record<string, unknown>;
    } catch {
      // broken by the agent
    }
    text = `${JSON.stringify(mergeJson(existing, seed.json), null, 2)}\n`;
  } else {
    text = seed.text;
  }
  home.write(seed.path, text, 0o600);
}

function mergeJson(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isObject(value) && isObject(current) ? mergeJson(current, value) : value;
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
