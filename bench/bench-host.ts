import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { writeSmallWorkspace } from './measure.js';

/** The OCI image the benches run (BENCH_IMAGE overrides). */
export const BENCH_IMAGE = process.env['BENCH_IMAGE'] ?? 'localhost/agentcell/cell:test';

/** A throwaway host for one bench: the small workspace, and a HOME and agentcell state of its own. */
export interface BenchHost {
  root: string;
  workspace: string;
  /** PATH from the caller; HOME and AGENTCELL_HOME under `root`, so no real config leaks in. */
  env: { PATH: string; HOME: string; AGENTCELL_HOME: string };
  remove(): void;
}

export function makeBenchHost(name: string): BenchHost {
  const root = mkdtempSync(join(tmpdir(), `agentcell-bench-${name}-`));
  const workspace = join(root, 'repo');
  writeSmallWorkspace(workspace);
  return {
    root,
    workspace,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: join(root, 'home'), AGENTCELL_HOME: join(root, 'ac') },
    remove: () => removeTrees([root]),
  };
}

/** The engine has the bench image (podman or docker; gVisor runs docker's). */
export function engineHasImage(engine: 'podman' | 'docker'): boolean {
  return spawnSync(engine, ['image', 'inspect', BENCH_IMAGE], { stdio: 'ignore', timeout: 10_000 }).status === 0;
}

/** How busy the machine was: a bench's numbers are read against it. */
export function loadLine(loadBefore: number): string {
  return `load average ${loadBefore.toFixed(1)} before, ${(loadavg()[0] ?? 0).toFixed(1)} after, on ${cpus().length} cores`;
}
