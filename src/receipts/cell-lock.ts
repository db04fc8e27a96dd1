import { basename, join } from 'node:path';
import { ensureDir } from '../_internal/atomic-file.js';
import { acquireFileLock, readLockHolder, type LockHolder, type ReleaseLock } from '../_internal/file-lock.js';
import type { ProcessOwner } from '../_internal/process-identity.js';

export interface CellLockOptions {
  /** Wait for the cell to become free instead of failing at once (default false). */
  wait?: boolean;
  /** How long to wait, when waiting (default: no limit). */
  timeoutMs?: number;
  /** What the holder is doing, shown to anyone who finds the cell busy (default: agentcell's argv). */
  command?: string[];
  isAlive?: (holder: ProcessOwner) => boolean;
}

export function cellLockPath(cellDir: string): string {
  return join(cellDir, 'lock');
}

/**
 * One agentcell command at a time per cell: `<cellDir>/lock`, created exclusively and
 * holding pid, process start time and command. A lock left by a process that died is
 * broken. Without `wait`, a busy cell fails at once with an error naming the holder's
 * pid and command. Returns the release function.
 */
export async function acquireCellLock(cellDir: string, options: CellLockOptions = {}): Promise<ReleaseLock> {
  ensureDir(cellDir, 0o700);
  return acquireFileLock(cellLockPath(cellDir), { ...options, what: `cell "${basename(cellDir)}"` });
}

/** Who holds the cell, for `cell show`; null when nobody does (a dead holder's stale lock still shows). */
export function cellLockHolder(cellDir: string): LockHolder | null {
  return readLockHolder(cellLockPath(cellDir));
}
