import { readFileSync, readlinkSync } from 'node:fs';

/**
 * SIGKILLs the process whose pid an engine wrote to `pidFile` (`run --pidfile`), the
 * container's first process: its pid namespace, and so the whole cell, dies with it. Only
 * a process in another pid namespace than agentcell's is killed, so a stale file whose pid
 * was reused on the host kills nothing. True if the signal was sent; nothing written yet
 * (the container still starting) is false, and the caller's engine `kill` remains.
 */
export function killByPidFile(pidFile: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return false;
  }
  if (!Number.isSafeInteger(pid) || pid <= 1) return false;
  try {
    if (readlinkSync(`/proc/${pid}/ns/pid`) === readlinkSync('/proc/self/ns/pid')) return false;
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    // gone already, or not ours to signal
    return false;
  }
}
