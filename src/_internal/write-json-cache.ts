import { renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { makeDirs } from './make-dirs.js';

/**
 * Replaces a cache file atomically (temp file + rename, so a concurrent reader sees the
 * old or the new content). Best effort: a cache that cannot be written only costs the
 * next run the work it saves.
 */
export function writeJsonCache(path: string, value: unknown): void {
  try {
    makeDirs(dirname(path), 0o700);
    const temp = `${path}.${process.pid}`;
    writeFileSync(temp, JSON.stringify(value));
    renameSync(temp, path);
  } catch {
    // read-only state dir
  }
}
