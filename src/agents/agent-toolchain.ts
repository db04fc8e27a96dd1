import { spawn } from 'node:child_process';
import { existsSync, realpathSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AgentcellError } from '../errors.js';
import { findExecutable } from '../_internal/find-executable.js';
import { removeTrees } from '../_internal/remove-trees.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import type { AgentAdapter } from './agent-adapter.js';
import { makeDirs } from '../_internal/make-dirs.js';

/** Where a toolchain appears in every cell (read-only). */
export const CELL_TOOLCHAINS = '/opt/agentcell/toolchains';
/** Written last into a toolchain dir: its presence means the install finished. */
const COMPLETE_MARK = '.agentcell-toolchain.json';

/** Where an agent's CLI comes from for one run, fully resolved. */
export type AgentToolchain =
  | {
      source: 'npm';
      npmPackage: string;
      version: string;
      /** Host dir: `<toolchains>/<agent>/<version>`, an npm prefix, bound read-only into the cell. */
      dir: string;
      /** Where the cell sees it, and the command's path there. */
      cellDir: string;
      executable: string;
      installed: boolean;
    }
  | {
      source: 'host';
      version: string;
      /** The host directory bound read-only (the CLI's package root, or the binary's directory). */
      dir: string;
      cellDir: string;
      executable: string;
    };

/**
 * Toolchains are shared read-only between cells: `AGENTCELL_TOOLCHAIN_CACHE` (tests
 * share one per machine) or the state dir.
 */
export function toolchainsRoot(stateDir: string, hostEnv: NodeJS.ProcessEnv): string {
  return hostEnv['AGENTCELL_TOOLCHAIN_CACHE'] || join(stateDir, 'toolchains');
}

export function npmToolchain(adapter: AgentAdapter, version: string, root: string): AgentToolchain {
  const dir = join(root, adapter.name, version);
  const cellDir = `${CELL_TOOLCHAINS}/${adapter.name}`;
  return {
    source: 'npm',
    npmPackage: adapter.npmPackage,
    version,
    dir,
    cellDir,
    executable: `${cellDir}/node_modules/.bin/${adapter.bin}`,
    installed: existsSync(join(dir, COMPLETE_MARK)),
  };
}

/**
 * The host's own CLI, bound read-only: for an npm-installed CLI the whole `node_modules`
 * it lives in (its platform binary is often a sibling package), else the binary's directory.
 */
export function hostToolchain(adapter: AgentAdapter, hostEnv: NodeJS.ProcessEnv): AgentToolchain {
  const found = findExecutable(adapter.bin, hostEnv);
  if (!found)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `agent.source = "host": ${adapter.bin} is not on PATH; install it, or use agent.source = "npm"`,
    );
  const real = realpathSync(found);
  const marker = real.indexOf('/node_modules/');
  const dir = marker === -1 ? dirname(real) : real.slice(0, marker + '/node_modules'.length);
  // Bound under a `node_modules` of its own name, so Node still resolves the siblings.
  const cellDir = `${CELL_TOOLCHAINS}/${adapter.name}-host${marker === -1 ? '' : '/node_modules'}`;
  return { source: 'host', version: `host ${real}`, dir, cellDir, executable: `${cellDir}${real.slice(dir.length)}` };
}

/** `latest` (or any tag or range) as the exact version npm would install now. */
export async function resolveNpmVersion(npmPackage: string, spec: string): Promise<string> {
  if (/^\d+\.\d+\.\d+(-[\w.]+)?$/.test(spec)) return spec;
  const out = await npm(['view', `${npmPackage}@${spec}`, 'version', '--json'], undefined);
  const parsed = JSON.parse(out) as string | string[];
  const version = Array.isArray(parsed) ? parsed.at(-1) : parsed;
  if (!version) throw new AgentcellError('USAGE', `agent.version: npm has no ${npmPackage}@${spec}`);
  return version;
}

/**
 * Installs the toolchain on the host (the host's network, never the cell's) into a temp
 * dir, then renames it into place: a killed install leaves nothing half-done, and two
 * concurrent installs end with one complete copy.
 */
export async function installToolchain(toolchain: AgentToolchain, progress: (line: string) => void): Promise<void> {
  if (toolchain.source !== 'npm' || existsSync(join(toolchain.dir, COMPLETE_MARK))) return;
  const temp = `${toolchain.dir}.partial-${process.pid}`;
  try {
    makeDirs(temp);
  } catch (cause) {
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `cannot install ${toolchain.npmPackage} into ${dirname(temp)} (${(cause as NodeJS.ErrnoException).code ?? 'error'}); point AGENTCELL_TOOLCHAIN_CACHE at a writable directory`,
      { cause },
    );
  }
  const spec = `${toolchain.npmPackage}@${toolchain.version}`;
  progress(`agentcell: installing ${spec} into ${toolchain.dir} (once; cells share it read-only)`);
  const started = Date.now();
  try {
    await npm(
      ['install', '--prefix', temp, '--no-audit', '--no-fund', '--no-save', '--loglevel', 'error', spec],
      progress,
    );
    writeFileAtomic(
      join(temp, COMPLETE_MARK),
      `${JSON.stringify({ package: toolchain.npmPackage, version: toolchain.version, installedAt: new Date().toISOString() })}\n`,
      0o644,
    );
    try {
      renameSync(temp, toolchain.dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !existsSync(join(toolchain.dir, COMPLETE_MARK))) throw error;
    }
  } finally {
    if (existsSync(temp)) removeTrees([temp]);
  }
  progress(`agentcell: installed ${spec} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  toolchain.installed = true;
}

/** npm on the host, output relayed line by line to `progress` (npm is quiet at loglevel error). */
function npm(args: string[], progress: ((line: string) => void) | undefined): Promise<string> {
  const executable = findExecutable('npm');
  if (!executable)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      'npm is not on PATH: install Node.js and npm to install agent CLIs',
    );
  return new Promise((resolvePromise, reject) => {
    const child = spawn(executable, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (progress) for (const line of chunk.toString().split('\n')) if (line.trim()) progress(`  npm: ${line}`);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = progress ? setInterval(() => progress('agentcell: still installing…'), 15_000) : undefined;
    child.on('error', reject);
    child.on('close', (code) => {
      if (timer) clearInterval(timer);
      if (code === 0) resolvePromise(stdout);
      else
        reject(
          new AgentcellError(
            'BACKEND_UNAVAILABLE',
            `npm ${args.slice(0, 2).join(' ')} failed (exit ${String(code)}): ${lastLines(stderr)}; check the registry is reachable (npm ping)`,
          ),
        );
    });
  });
}

function lastLines(text: string): string {
  return text.trim().split('\n').slice(-3).join(' / ') || 'no output';
}
