import { AgentcellError } from '../errors.js';
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, renameSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as z from 'zod/mini';
import { createFileAtomic, removeQuietly } from './atomic-file.js';
import { currentProcess, isProcessAlive, ProcessOwnerSchema, type ProcessOwner } from './process-identity.js';
import { stateFileProblem } from './state-file.js';

/** What a lock file holds: who has it, since when, doing what. */
const LockHolderSchema = z.object({
  ...ProcessOwnerSchema.shape,
  command: z.array(z.string()),
  acquiredAt: z.string(),
  /** Tells this holding apart from an earlier one by a process with the same pid. */
  nonce: z.string(),
});
export type LockHolder = z.infer<typeof LockHolderSchema>;

/** A lock only matters while its owner lives, and a machine crash ends every owner. */
const NOT_DURABLE = { durable: false };

export interface FileLockOptions {
  /** Wait for the holder to finish instead of failing at once (default false). */
  wait?: boolean;
  /** How long to wait, when waiting (default: no limit). */
  timeoutMs?: number;
  /** Shown to whoever finds the lock taken (default: agentcell's own argv). */
  command?: string[];
  /** Whether a holder still runs; a dead holder's lock is broken. */
  isAlive?: (holder: ProcessOwner) => boolean;
  /** Names what the lock guards in messages, e.g. `cell "web"`. */
  what?: string;
}

/** Releases the lock; calling it again does nothing. */
export type ReleaseLock = () => void;

/**
 * An exclusive lock held by one process: `path` is created whole (temp + link, so it
 * never exists half-written) holding the holder's pid, process start time, command
 * and a nonce. A lock whose holder died (pid gone, a zombie, or the pid reused by a
 * later process) is broken, under a second short `.break` lock so that two processes
 * breaking it at once can't remove a fresh lock taken meanwhile.
 */
export async function acquireFileLock(path: string, options: FileLockOptions = {}): Promise<ReleaseLock> {
  const isAlive = options.isAlive ?? isProcessAlive;
  const what = options.what ?? path;
  const me: LockHolder = {
    ...currentProcess(),
    command: options.command ?? ['agentcell', ...process.argv.slice(2)],
    acquiredAt: new Date().toISOString(),
    nonce: randomBytes(12).toString('hex'),
  };
  const started = Date.now();
  const deadline = options.wait ? started + (options.timeoutMs ?? Number.POSITIVE_INFINITY) : started + 2_000;
  for (let attempt = 0; ; attempt++) {
    if (createFileAtomic(path, `${JSON.stringify(me)}\n`, 0o600, NOT_DURABLE)) return releaser(path, me.nonce);
    const raw = readRaw(path);
    if (raw === null && attempt < 100) continue; // released meanwhile (bounded: the deadline is checked below)
    const holder = raw === null ? null : parseHolder(raw);
    if (raw !== null && (holder === null || !isAlive(holder))) {
      breakStaleLock(path, raw, isAlive);
      // A stale lock is gone or being broken by another process: try again, even without wait.
    } else if (holder !== null && !options.wait) {
      throw new AgentcellError(
        'CELL_LOCKED',
        `${what} is in use by ${describeHolder(holder)}; wait for it to finish or stop it`,
      );
    }
    if (Date.now() >= deadline) {
      const now = holder ? `; still held by ${describeHolder(holder)}` : '';
      throw new AgentcellError('CELL_LOCKED', `timed out after ${Date.now() - started} ms waiting for ${what}${now}`);
    }
    await sleep(Math.min(250, 5 * 2 ** Math.min(attempt, 6)) + Math.random() * 10);
  }
}

/** Who holds the lock at `path`, if anyone does. */
export function readLockHolder(path: string): LockHolder | null {
  const raw = readRaw(path);
  return raw === null ? null : parseHolder(raw);
}

export function describeHolder(holder: LockHolder): string {
  const where = holder.host ? ` on ${holder.host}` : '';
  return `agentcell pid ${holder.pid}${where} (since ${holder.acquiredAt}, running: ${holder.command.join(' ')})`;
}

function releaser(path: string, nonce: string): ReleaseLock {
  let released = false;
  return () => {
    if (released) return;
    released = true;
    // Only ever remove our own holding: if it was (wrongly) broken, the file is someone else's now.
    if (readLockHolder(path)?.nonce === nonce) removeQuietly(path);
  };
}

/** Removes the lock at `path` if it still holds `staleRaw`, as one breaker at a time. */
function breakStaleLock(path: string, staleRaw: string, isAlive: (holder: ProcessOwner) => boolean): void {
  const breakPath = `${path}.break`;
  const breaker: LockHolder = {
    ...currentProcess(),
    command: ['break stale lock'],
    acquiredAt: new Date().toISOString(),
    nonce: randomBytes(12).toString('hex'),
  };
  if (!createFileAtomic(breakPath, `${JSON.stringify(breaker)}\n`, 0o600, NOT_DURABLE)) {
    // Someone else is breaking it. If that breaker died mid-way, clear its marker so the next attempt can.
    const other = readLockHolder(breakPath);
    if (other === null || !isAlive(other)) removeQuietly(breakPath);
    return;
  }
  try {
    if (readRaw(path) !== staleRaw) return; // already broken, or released and retaken
    const aside = `${path}.stale.${breaker.nonce}`;
    try {
      renameSync(path, aside);
    } catch {
      return;
    }
    if (readRaw(aside) !== staleRaw) {
      // Not the lock we judged stale after all: put it back.
      try {
        linkSync(aside, path);
      } catch {
        // a new lock exists; ours was never valid
      }
    }
    removeQuietly(aside);
  } finally {
    if (readLockHolder(breakPath)?.nonce === breaker.nonce) removeQuietly(breakPath);
  }
}

function readRaw(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** A lock that does not parse has no holder anyone could wait for: it is broken like a dead one's. */
function parseHolder(raw: string): LockHolder | null {
  const found = stateFileProblem(raw, LockHolderSchema);
  return found.ok ? found.value : null;
}
