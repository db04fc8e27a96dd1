import { chmodSync, copyFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { removeCellDir } from '../cell/cell-store.js';
import { defaultCellName } from '../cell/cell-name.js';
import { prepareRun, resolveCellPolicy, type CellOptions, type PreparedRun } from '../cell/prepare-run.js';
import { runPrepared } from '../cell/run-cell.js';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import type { AgentName } from './agent-adapter.js';
import { agentAdapter } from './agent-registry.js';
import { loginStore } from './login-store.js';
import { readyAgent } from './prepare-agent.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { withCanaryPrelude } from '../evidence/canary-script.js';

export interface LoginRequest extends Pick<CellOptions, 'workspace' | 'mode' | 'timeout' | 'ackBreakglass'> {
  agent: string;
  /** Replace the login command's arguments (e.g. `login --with-api-key` for Codex). */
  args?: string[];
  paths: AgentcellPaths;
  tty: boolean;
  hostEnv?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface PreparedLogin {
  agent: AgentName;
  prepared: PreparedRun;
  store: string;
  files: string[];
}

/**
 * The agent's own login, in a cell of its own (`<workspace cell>-login-<agent>`): the
 * workspace read-only, the network limited to the login's hosts and the provider's.
 */
export async function prepareLogin(request: LoginRequest): Promise<PreparedLogin> {
  const adapter = agentAdapter(request.agent, 'login');
  const login = adapter.login;
  if (!login)
    throw new AgentcellError(
      'USAGE',
      `${adapter.name} has no login of its own; set its API key on the host (${adapter.credentials.map((c) => c.hostEnv[0]).join(', ')}) and the gateway injects it`,
    );
  const cwd = request.cwd ?? process.cwd();
  const { workspace } = await resolveCellPolicy(request, request.paths, cwd, request.hostEnv);
  const prepared = await prepareRun({
    ...request,
    cwd,
    cell: `${defaultCellName(workspace)}-login-${adapter.name}`,
    agent: adapter.name,
    workspaceMode: 'readonly',
    network: 'allowlist',
    allow: login.hosts,
    argv: ['login'],
  });
  const args = request.args?.length ? request.args : login.argv.slice(1);
  // The login command itself, not the unattended flags of a coding session.
  if (prepared.agent) {
    prepared.spec.argv = withCanaryPrelude([prepared.agent.toolchain.executable, ...args]);
    prepared.plan = prepared.backend.plan(prepared.spec);
  }
  return { agent: adapter.name, prepared, store: loginStore(request.paths.config, adapter.name), files: login.files };
}

/**
 * Runs the login; on success copies the credential files from the login cell's home into
 * the store and deletes the login cell, so no copy stays in cell state.
 */
export async function runLogin(
  login: PreparedLogin,
  paths: AgentcellPaths,
  progress: (line: string) => void,
): Promise<{ exitCode: number; stored: string[] }> {
  const { prepared } = login;
  if (!prepared.agent) throw new Error('a login run is an agent run');
  await readyAgent(prepared.agent, progress);
  let stored: string[] = [];
  try {
    const { outcome } = await runPrepared(prepared, paths);
    if (outcome.exitCode !== 0) return { exitCode: outcome.exitCode, stored };
    const home = prepared.agent.home;
    stored = login.files.filter((file) => existsSync(join(home, file)));
    if (stored.length === 0)
      throw new AgentcellError(
        'INTERNAL',
        `${login.agent}'s login finished but wrote none of ${login.files.map((f) => `~/${f}`).join(', ')}; nothing was stored`,
      );
    for (const file of stored) {
      const target = join(login.store, file);
      makeDirs(dirname(target), 0o700);
      chmodSync(login.store, 0o700);
      copyFileSync(join(home, file), target);
      chmodSync(target, 0o600);
    }
    return { exitCode: 0, stored: stored.map((file) => join(login.store, file)) };
  } finally {
    removeCellDir(paths, prepared.cell);
  }
}
