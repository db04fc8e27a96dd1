import { lstatSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { AgentcellError } from '../errors.js';
import { makeDirs } from './make-dirs.js';

/** The tmpfs every Linux host mounts for POSIX shared memory (world-writable, sticky). */
const SHM = '/dev/shm';
const TMPFS_MAGIC = 0x01021994;

/**
 * Where agentcell keeps what a cell binds from the host (the egress socket, copies of
 * small files, the empty files of masks): a private directory on the host's /dev/shm
 * tmpfs, or undefined when there is none. A bind mount shows in the cell's
 * /proc/self/mountinfo as its source's path *within its filesystem*, which no mount in
 * the cell can change: from the state dir that is the host's layout
 * (/home/USER/.local/state/agentcell/cells/…), from here only `/agentcell-UID/…`.
 */
export function neutralRuntimeDir(): string | undefined {
  try {
    if (statfsSync(SHM).type !== TMPFS_MAGIC) return undefined;
  } catch {
    return undefined;
  }
  return join(SHM, `agentcell-${process.getuid?.() ?? 'user'}`);
}

/**
 * Makes `dir` (under neutralRuntimeDir()) and its parent, and checks both are this user's
 * own directories, mode 0700: /dev/shm is shared, so another user could have made them first.
 */
export function makeNeutralDir(dir: string): void {
  makeDirs(dir, 0o700);
  const uid = process.getuid?.();
  for (let path = dir; path !== SHM && path !== '/'; path = join(path, '..')) {
    const stat = lstatSync(path);
    if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o077) !== 0)
      throw new AgentcellError(
        'BACKEND_UNAVAILABLE',
        `${path} is not a private directory of this user (another user may have made it); remove it and retry`,
      );
  }
}

/**
 * The name of a run's own entry in the neutral dir: it ends in the pid of the agentcell
 * process that made it, so `sweepNeutralDir` can tell one whose process is gone (a killed
 * run removes nothing after itself).
 */
export function neutralRunEntry(kind: 'run' | 'enforcement', name: string): string {
  return `${kind}-${name}-${process.pid}`;
}

const RUN_ENTRY = /^(?:run|enforcement)-.+-(\d+)$/;

/**
 * Removes the per-run entries (`neutralRunEntry`) whose agentcell process no longer exists
 * (with `dryRun`, only names them), and returns their names. Entries of live processes, and per-cell ones (the egress socket
 * dir, reused run after run), are left alone. A reused pid keeps a stale entry a while longer.
 */
export function sweepNeutralDir(options: { dryRun?: boolean; dir?: string } = {}): string[] {
  const dir = options.dir ?? neutralRuntimeDir();
  if (dir === undefined) return [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const swept: string[] = [];
  for (const name of names) {
    const pid = RUN_ENTRY.exec(name)?.[1];
    if (pid === undefined || processExists(Number(pid))) continue;
    if (options.dryRun !== true) rmSync(join(dir, name), { recursive: true, force: true });
    swept.push(name);
  }
  return swept;
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH'; // EPERM: alive, another user's
  }
}
