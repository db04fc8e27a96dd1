import { dirname } from 'node:path';
import { writeFileAtomic } from './atomic-file.js';
import { makeDirs } from './make-dirs.js';

/**
 * Replaces a cache file atomically (atomic-file.ts: a concurrent reader sees the old or
 * the new content), without fsync: a cache lost in a crash is rebuilt, as is a damaged
 * one (readJsonCache in state-file.ts). Best effort: a cache that cannot be written only
 * costs the next run the work it saves.
 */
export function writeJsonCache(path: string, value: unknown): void {
  try {
    makeDirs(dirname(path), 0o700);
    writeFileAtomic(path, JSON.stringify(value), 0o600, { durable: false });
  } catch {
    // read-only state dir
  }
}
