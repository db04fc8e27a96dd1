import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { makeDirs } from './make-dirs.js';

/** Creates a directory (and its parents) with `mode` for the ones it creates. */
export function ensureDir(path: string, mode = 0o700): void {
  makeDirs(path, mode);
}

/** A temp file name beside `path`, hidden from listings that match real names. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Durable writes survive a machine crash (fsync of the file and its directory). Files
 * that only have to survive agentcell being killed (locks, the run journal: the page
 * cache outlives a process) skip the fsyncs, which cost milliseconds on every run.
 */
export interface WriteOptions {
  durable?: boolean;
}

/**
 * Writes a new file with exactly `mode` (not narrowed by the umask: a 0644 trust bundle
 * must stay readable to a cell's user), flushed to disk unless not durable; fails if
 * `path` exists (O_EXCL, so never through a symlink planted there).
 */
export function writeNewFileSync(
  path: string,
  data: string | Uint8Array,
  mode: number,
  options: WriteOptions = {},
): void {
  const fd = openSync(path, 'wx', mode);
  try {
    fchmodSync(fd, mode);
    writeFileSync(fd, data);
    if (options.durable !== false) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync a directory so a rename or unlink in it survives a crash; a no-op where unsupported. */
export function fsyncDir(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw error;
  } finally {
    closeSync(fd);
  }
}

/** temp + fsync + rename + fsync(dir): readers see the old file or the whole new one. */
export function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode = 0o600,
  options: WriteOptions = {},
): void {
  const temp = tempPathFor(path);
  try {
    writeNewFileSync(temp, data, mode, options);
    renameSync(temp, path);
  } catch (error) {
    removeQuietly(temp);
    throw error;
  }
  if (options.durable !== false) fsyncDir(dirname(path));
}

/**
 * Like writeFileAtomic, but never replaces an existing file: temp + fsync + link.
 * Returns false (and writes nothing) when `path` already exists.
 */
export function createFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode = 0o600,
  options: WriteOptions = {},
): boolean {
  const temp = tempPathFor(path);
  writeNewFileSync(temp, data, mode, options);
  try {
    linkSync(temp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    removeQuietly(temp);
  }
  if (options.durable !== false) fsyncDir(dirname(path));
  return true;
}

export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
