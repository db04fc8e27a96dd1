import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LimitHit, ResourceLimits } from './backend.js';
import { detectCgroupSupport, type CgroupSupport } from './cgroup-support.js';
import { makeDirs } from '../_internal/make-dirs.js';

/** The cgroups a cell's process tree is placed in, and what they limit. */
export interface CgroupPlan {
  /** New cgroup directories, created before the run and removed after it. */
  dirs: string[];
  /** Limit files and the values written to them. */
  settings: { path: string; value: string }[];
  /** Limits that were asked for and cannot be enforced here, one line each. */
  gaps: string[];
}

/**
 * Where and how pids and memory limits would be enforced; reads /proc, changes nothing.
 * `name` makes the cgroup unique to the run (cell name plus agentcell's pid).
 */
export function planCgroupLimits(
  limits: ResourceLimits,
  name: string,
  support: CgroupSupport = detectCgroupSupport(),
): CgroupPlan {
  const plan: CgroupPlan = { dirs: [], settings: [], gaps: [] };
  const leaf = `agentcell-${name}`;
  const place = (parent: string | undefined): string | undefined => {
    if (parent === undefined) return undefined;
    const dir = join(parent, leaf);
    if (!plan.dirs.includes(dir)) plan.dirs.push(dir);
    return dir;
  };
  if (limits.pids !== undefined) {
    const dir = place(support.dirs.pids);
    if (dir) plan.settings.push({ path: join(dir, 'pids.max'), value: String(limits.pids) });
    else plan.gaps.push(`resources.pids not enforced (${reasonFor('pids', support)})`);
  }
  if (limits.memoryBytes !== undefined) {
    const dir = place(support.dirs.memory);
    const file = support.version === 'v2' ? 'memory.max' : 'memory.limit_in_bytes';
    if (dir) plan.settings.push({ path: join(dir, file), value: String(limits.memoryBytes) });
    else plan.gaps.push(`resources.memory not enforced (${reasonFor('memory', support)})`);
  }
  if (limits.cpus !== undefined) plan.gaps.push('resources.cpus not enforced by the bwrap backend yet');
  return plan;
}

function reasonFor(controller: 'pids' | 'memory', support: CgroupSupport): string {
  const part = support.detail.split('; ').find((p) => p.startsWith(`${controller}:`)) ?? '';
  return part.replace(/^[a-z]+: not enforced \(?/, '').replace(/\)$/, '') || 'no writable cgroup';
}

/**
 * Prefixes argv with a shell that moves itself into the cgroups, then execs argv:
 * every process of the cell starts inside the limits, with no window before.
 */
export function wrapInCgroups(plan: CgroupPlan, argv: readonly string[]): string[] {
  if (plan.dirs.length === 0) return [...argv];
  const procs = plan.dirs.map((d) => join(d, 'cgroup.procs'));
  // sh exports PWD (the caller's cwd) even when it was not set: unset, or bwrap's pid 1 shows it to the cell.
  const script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; unset PWD; exec "$@"';
  return ['/bin/sh', '-c', script, 'agentcell-cgroup', ...procs, '--', ...argv];
}

export function createCgroups(plan: DeepReadonly<CgroupPlan>): void {
  for (const dir of plan.dirs) makeDirs(dir);
  for (const s of plan.settings) writeFileSync(s.path, s.value);
}

/**
 * The bound the run hit, read from the run's cgroups before they are removed: an OOM kill
 * (memory.events oom_kill on v2, memory.oom_control oom_kill on v1) or a refused fork
 * (pids.events max). Undefined when none was hit or the kernel doesn't say.
 */
export function readLimitHit(
  plan: DeepReadonly<CgroupPlan>,
  limits: ResourceLimits,
): { limitHit: LimitHit; limitDetail: string } | undefined {
  for (const setting of plan.settings) {
    const dir = setting.path.slice(0, setting.path.lastIndexOf('/'));
    const memory = setting.path.endsWith('memory.max')
      ? eventCount(join(dir, 'memory.events'), 'oom_kill')
      : setting.path.endsWith('memory.limit_in_bytes')
        ? eventCount(join(dir, 'memory.oom_control'), 'oom_kill')
        : 0;
    if (memory > 0 && limits.memoryBytes !== undefined) return memoryLimitHit(limits.memoryBytes);
    if (
      setting.path.endsWith('pids.max') &&
      limits.pids !== undefined &&
      eventCount(join(dir, 'pids.events'), 'max') > 0
    )
      return {
        limitHit: 'pids',
        limitDetail: `the run hit the process limit (${limits.pids} processes, [resources] pids)`,
      };
  }
  return undefined;
}

/** What a run that hit `[resources] memory` reports, on every backend. */
export function memoryLimitHit(memoryBytes: number): { limitHit: 'memory'; limitDetail: string } {
  return {
    limitHit: 'memory',
    limitDetail: `the run hit the memory limit (${Math.round(memoryBytes / 2 ** 20)} MiB, [resources] memory)`,
  };
}

function eventCount(file: string, key: string): number {
  try {
    const line = readFileSync(file, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${key} `));
    return line ? Number(line.slice(key.length + 1)) || 0 : 0;
  } catch {
    return 0;
  }
}

/** Removes the run's cgroups; the kernel refuses while a process remains, so retry briefly. */
export async function removeCgroups(plan: DeepReadonly<CgroupPlan>): Promise<void> {
  for (const dir of plan.dirs) {
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        rmdirSync(dir);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}
