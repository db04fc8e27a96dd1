import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CgroupPlan } from './cgroup-limits.js';
import { parseMountinfo, type CgroupMount } from './cgroup-support.js';

/**
 * Rootful podman on cgroupfs: the memory limit is set on a cgroup of agentcell's, made at the
 * top of the memory hierarchy, and the container is started under it (`--cgroup-parent`).
 * podman removes the container's own cgroup when it exits and, on cgroup v1, never reports
 * the kill (`OOMKilled` stays false), so the parent is where the run learns the limit was
 * hit: its `memory.events` oom_kill on v2 (counted up the tree); on v1, where the kernel
 * counts a kill only in the victim's own cgroup, the parent's `memory.failcnt` (the limit
 * was reached) with the command killed by SIGKILL.
 */
export interface OciMemoryCgroup {
  /** `--cgroup-parent`: a path from the hierarchy's root. */
  parent: string;
  /**
   * The limit, and the directories made before the run and removed after it: `parent` in
   * every hierarchy, and its `conmon` child (podman makes both; made here so they are known).
   */
  cgroups: CgroupPlan;
}

export function planOciMemoryCgroup(
  name: string,
  memoryBytes: number,
  mountinfo: string = readMountinfo(),
): OciMemoryCgroup | undefined {
  // Only a hierarchy seen from its root: inside a nested cgroup view `/NAME` is not ours to make.
  const mounts = parseMountinfo(mountinfo).filter((m) => m.root === '/' && existsSync(m.mountPoint));
  const memory =
    mounts.find((m) => m.fstype === 'cgroup' && m.controllers.includes('memory')) ??
    mounts.find((m) => m.fstype === 'cgroup2');
  if (!memory) return undefined;
  const leaf = `agentcell-${name}`;
  const dir = join(memory.mountPoint, leaf);
  const file = memory.fstype === 'cgroup2' ? 'memory.max' : 'memory.limit_in_bytes';
  // Children first, so the list removes in order.
  const dirs = mounts.flatMap((m: CgroupMount) => [join(m.mountPoint, leaf, 'conmon'), join(m.mountPoint, leaf)]);
  return {
    parent: `/${leaf}`,
    cgroups: { dirs, settings: [{ path: join(dir, file), value: String(memoryBytes) }], gaps: [] },
  };
}

/** Whether the run's memory limit was hit, read from the limit's cgroup before it is removed. */
export function memoryCgroupHit(cgroups: DeepReadonly<CgroupPlan>, exitCode: number): boolean {
  const limit = cgroups.settings[0]?.path;
  if (limit === undefined) return false;
  const dir = dirname(limit);
  if (existsSync(join(dir, 'memory.events'))) return eventCount(join(dir, 'memory.events'), 'oom_kill') > 0;
  const failures = Number(readText(join(dir, 'memory.failcnt')).trim()) || 0;
  return exitCode === 137 && failures > 0;
}

function eventCount(file: string, key: string): number {
  const line = readText(file)
    .split('\n')
    .find((l) => l.startsWith(`${key} `));
  return line ? Number(line.slice(key.length + 1)) || 0 : 0;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function readMountinfo(): string {
  return readText('/proc/self/mountinfo');
}
