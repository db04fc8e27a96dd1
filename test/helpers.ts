import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeTrees } from '../src/workspace/overlay/layer-trash.js';

/** The bundled CLI, as users run it. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'agentcell.cjs');

export interface Sandbox {
  root: string;
  home: string;
  agentcellHome: string;
  workspace: string;
  env: NodeJS.ProcessEnv;
  cleanup(): void;
}

/**
 * A throwaway HOME, AGENTCELL_HOME and workspace, so no real config leaks into a test
 * and nothing a test does reaches the real ones.
 */
export function makeSandbox(files: Record<string, string> = {}): Sandbox {
  const root = mkdtempSync(join(tmpdir(), 'agentcell-test-'));
  const home = join(root, 'home');
  const agentcellHome = join(root, 'agentcell');
  const workspace = join(root, 'work');
  for (const dir of [home, agentcellHome, workspace]) mkdirSync(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    const full = join(workspace, path);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, content);
  }
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: home,
    AGENTCELL_HOME: agentcellHome,
    LANG: 'C.UTF-8',
  };
  // Overlay leaves work/work at mode 000, which a non-root rm cannot enter: removeTrees chmods first.
  return { root, home, agentcellHome, workspace, env, cleanup: () => removeTrees([root]) };
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function agentcell(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; input?: string }): CliResult {
  const result: SpawnSyncReturns<string> = spawnSync(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    env: options.env,
    encoding: 'utf8',
    input: options.input ?? '',
    timeout: 60_000,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs `agentcell run -- sh -c SCRIPT` in the sandbox's workspace. */
export function inCell(
  sandbox: Sandbox,
  script: string,
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
): CliResult {
  return agentcell(['run', ...extraArgs, '--', 'sh', '-c', script], {
    cwd: sandbox.workspace,
    env: { ...sandbox.env, ...env },
  });
}

export function startCli(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
  return spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/**
 * Every entry below a directory, relative, for "nothing changed" assertions. A directory
 * this user cannot read (overlayfs's work dir is mode 000) is listed, not entered.
 */
export function listTree(dir: string, prefix = ''): string[] {
  let names: string[];
  try {
    names = readdirSync(join(dir, prefix));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EACCES') return [];
    throw error;
  }
  return names
    .flatMap((name) => {
      const rel = prefix ? `${prefix}/${name}` : name;
      return lstatSync(join(dir, rel)).isDirectory() ? [rel, ...listTree(dir, rel)] : [rel];
    })
    .sort();
}
