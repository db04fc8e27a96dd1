import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import * as z from 'zod/mini';

/**
 * A process as other agentcell processes can recognise it later: the pid alone can be
 * reused after the process dies, so the kernel's start time of the process
 * (/proc/<pid>/stat field 22, clock ticks since boot) goes with it where there is one.
 */
export const ProcessOwnerSchema = z.object({
  pid: z.int(),
  /** null where /proc is not available (macOS): then only the pid is compared. */
  startTime: z.nullable(z.string()),
  host: z.string(),
});
export type ProcessOwner = z.infer<typeof ProcessOwnerSchema>;

/** Field 22 of /proc/<pid>/stat, or null when the process or /proc is not there. */
export function processStartTime(pid: number): string | null {
  const stat = readStat(pid);
  return stat ? (stat[19] ?? null) : null;
}

/** This process. */
export function currentProcess(): ProcessOwner {
  return { pid: process.pid, startTime: processStartTime(process.pid), host: hostname() };
}

/**
 * Whether `owner` is still running. A process on another host can't be checked and
 * counts as alive, so nothing of a live run elsewhere (shared state dir) is taken
 * over. A zombie, or a pid now used by a process that started at another time,
 * counts as dead.
 */
export function isProcessAlive(owner: ProcessOwner): boolean {
  if (owner.host && owner.host !== hostname()) return true;
  if (!Number.isSafeInteger(owner.pid) || owner.pid <= 0) return false;
  let foreign = false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
    foreign = true;
  }
  const stat = readStat(owner.pid);
  // No stat: no /proc here, /proc hides other users' processes, or it just exited.
  if (!stat) return foreign || readStat(process.pid) === null;
  if (stat[0] === 'Z' || stat[0] === 'X') return false;
  return owner.startTime === null || stat[19] === owner.startTime;
}

/** The fields of /proc/<pid>/stat after `comm`, so index 0 is field 3 (state). */
function readStat(pid: number): string[] | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm (field 2) is in parentheses and may itself contain spaces and parentheses.
  const end = text.lastIndexOf(')');
  if (end < 0) return null;
  return text
    .slice(end + 1)
    .trim()
    .split(/\s+/);
}
