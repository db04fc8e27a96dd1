import { readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { readStateFile, writeStateFile, type StateFileKind } from '../_internal/state-file.js';
import { TEMP_MARK } from './accept-changes.js';
import { PinnedDirs } from './pinned-dirs.js';

/**
 * Where an accept is writing its temporary files (`.agentcell-accept-<random>-N`, beside
 * their targets), recorded in the cell before it starts and removed when it ends: an
 * accept that is killed leaves the record, and the next decision removes exactly those
 * files (its own prefix, in the directories it named; never a directory, never through
 * a symlink).
 */
const MarkerSchema = z.strictObject({
  prefix: z.string().check(z.regex(/^\.agentcell-accept-[0-9a-f]+-$/)),
  dirs: z.array(z.string()),
});

const FILE = 'accept-temps.json';

const MARKER_FILE: StateFileKind<typeof MarkerSchema> = {
  schema: MarkerSchema,
  what: 'the record of an interrupted accept’s temporary files',
  fix: (path) => `Remove it (rm ${path}) and delete any .agentcell-accept-* files left in the workspace by hand`,
};

export function markTemps(cellDir: string, prefix: string, dirs: readonly string[]): void {
  writeStateFile(join(cellDir, FILE), MARKER_FILE, { prefix, dirs: [...dirs] }, { mode: 0o644 });
}

export function unmarkTemps(cellDir: string): void {
  rmSync(join(cellDir, FILE), { force: true });
}

/** Removes what a killed accept left in the workspace; returns how many files. */
export function removeStaleTemps(cellDir: string, workspace: string): number {
  const marker = readStateFile(join(cellDir, FILE), MARKER_FILE);
  if (!marker) return 0;
  let removed = 0;
  if (marker.prefix.startsWith(TEMP_MARK)) {
    const dirs = new PinnedDirs(workspace);
    try {
      for (const dir of marker.dirs) {
        let fd: number;
        try {
          fd = dirs.dir(dir);
        } catch {
          continue; // gone, or not a directory any more
        }
        for (const name of readdirSync(`/proc/self/fd/${fd}`)) {
          if (!name.startsWith(marker.prefix)) continue;
          const rel = dir === '' ? name : `${dir}/${name}`;
          if (dirs.lstat(rel)?.isDirectory() === false) {
            unlinkSync(dirs.at(rel));
            removed++;
          }
        }
      }
    } finally {
      dirs.close();
    }
  }
  unmarkTemps(cellDir);
  return removed;
}
