import assert from 'node:assert/strict';
import type { AddressInfo, Server } from 'node:net';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeTrees } from '../src/_internal/remove-trees.js';

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
    // Where rootless podman keeps its images when HOME is the sandbox's (scripts/test.sh).
    ...(process.env['XDG_DATA_HOME'] ? { XDG_DATA_HOME: process.env['XDG_DATA_HOME'] } : {}),
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

/** Polls `check` every 50 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts `agentcell run -- sh -c SCRIPT; echo ready; sleep SECONDS` and resolves once it printed ready. */
export async function startReadyRun(sb: Sandbox, script: string, seconds = '30'): Promise<ReturnType<typeof startCli>> {
  const child = startCli(['run', '--', 'sh', '-c', `${script}; echo ready; sleep ${seconds}`], {
    cwd: sb.workspace,
    env: sb.env,
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => ((out += d.toString()), out.includes('ready') && resolve()));
    child.on('exit', (code) => reject(new Error(`run ended before ready (exit ${String(code)}): ${out}`)));
  });
  return child;
}

/** An allowlist policy for the a.test / b.test servers the reload tests run on loopback. */
export function writeAllowlistPolicy(sb: Sandbox, allow: string[]): void {
  writeFileSync(
    join(sb.workspace, 'agentcell.toml'),
    [
      '[network]',
      'mode = "allowlist"',
      `allow = [${allow.map((h) => JSON.stringify(h)).join(', ')}]`,
      'resolve = { "a.test" = "127.0.0.1", "b.test" = "127.0.0.1" }',
      '',
    ].join('\n'),
  );
}

/**
 * The CLI in the sandbox without blocking this process, so servers the test runs keep
 * answering while the cell uses them; killed after `timeoutMs`.
 */
export function agentcellAsync(
  sb: Sandbox,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = startCli(args, { cwd: sb.workspace, env: { ...sb.env, ...options.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
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

/** Runs the CLI in the sandbox's workspace. */
export function ac(sb: Sandbox, ...args: string[]): CliResult {
  return agentcell(args, { cwd: sb.workspace, env: sb.env });
}

/** Runs the CLI, expects exit 0 and JSON on stdout. */
export function acJson<T>(sb: Sandbox, ...args: string[]): T {
  const r = ac(sb, ...args);
  assert.equal(r.status, 0, `agentcell ${args.join(' ')} exited ${String(r.status)}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The state dir of the one cell a fresh sandbox has after its first run. */
export function cellDirOf(sb: Sandbox, name?: string): string {
  const cells = join(sb.agentcellHome, 'state', 'cells');
  if (name !== undefined) return join(cells, name);
  const names = readdirSync(cells);
  assert.equal(names.length, 1, `expected one cell, found ${names.join(', ')}`);
  return join(cells, names[0]!);
}

/**
 * Every entry under a directory: type, permission bits, mtime, and content hash or
 * link target. Directories that can't be read (overlayfs leaves work/work at mode 000)
 * are recorded, not entered.
 */
export function snapshot(root: string): Map<string, string> {
  const entries = new Map<string, string>();
  const walk = (rel: string): void => {
    const full = rel ? join(root, rel) : root;
    // Gone while walking: a background purge of a cell's trash/ (a state that changes
    // under the walk still differs from any snapshot taken before it).
    const st = lstatSync(full, { throwIfNoEntry: false });
    if (!st) return;
    let detail = `${(st.mode & 0o177777).toString(8)} ${st.mtimeMs} ${st.size}`;
    if (st.isFile()) {
      try {
        detail += ' ' + createHash('sha256').update(readFileSync(full)).digest('hex');
      } catch {
        detail += ' unreadable';
      }
    }
    if (st.isSymbolicLink()) detail += ' -> ' + readlinkSync(full);
    entries.set(rel || '.', detail);
    if (!st.isDirectory()) return;
    let names: string[];
    try {
      names = readdirSync(full);
    } catch {
      return;
    }
    for (const name of names.sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk('');
  return entries;
}

/** Starts `server` on an ephemeral loopback port and resolves with the port. */
export function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

/** Where the agent CLIs the tests install from npm are cached (scripts/test.sh sets it for both passes). */
export const TOOLCHAIN_CACHE = process.env['AGENTCELL_TOOLCHAIN_CACHE'] || '/var/tmp/agentcell-toolchains';

/** A sandbox for agent runs: the shared toolchain cache, and npm's host network settings for a first install. */
export function agentSandbox(files: Record<string, string> = {}): Sandbox {
  const sb = makeSandbox(files);
  sb.env['AGENTCELL_TOOLCHAIN_CACHE'] = TOOLCHAIN_CACHE;
  for (const name of ['NODE_EXTRA_CA_CERTS', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy']) {
    const value = process.env[name];
    if (value !== undefined) sb.env[name] = value;
  }
  return sb;
}
