import { readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { TEMP_MARK } from './accept-changes.js';
import { PinnedDirs } from './pinned-dirs.js';

/**
 * Where an accept is writing its temporary files (`.agentcell-accept-<random>-N`, beside
 * their targets), recorded in the cell before it starts and removed when it ends: an
 * accept that is killed leaves the record, and the next decision removes exactly those
 * files (its own prefix, in the directories it named; never a directory, never through
 * a symlink).
 */
const marker = z.object({
  prefix: z.string().check(z.regex(/^\.agentcell-accept-[0-9a-f]+-$/)),
  dirs: z.array(z.string()),
});

const FILE = 'accept-temps.json';

export function markTemps(cellDir: string, prefix: string, dirs: readonly string[]): void {
  writeFileSync(join(cellDir, FILE), JSON.stringify({ prefix, dirs }));
}

export function unmarkTemps(cellDir: string): void {
  rmSync(join(cellDir, FILE), { force: true });
}

/** Removes what a killed accept left in the workspace; returns how many files. */
export function removeStaleTemps(cellDir: string, workspace: string): number {
  let text: string;
  try {
    text = readFileSync(join(cellDir, FILE), 'utf8');
  } catch {
    return 0;
  }
  const parsed = marker.safeParse(JSON.parse(text));
  let removed = 0;
  if (parsed.success && parsed.data.prefix.startsWith(TEMP_MARK)) {
    const dirs = new PinnedDirs(workspace);
    try {
      for (const dir of parsed.data.dirs) {
        let fd: number;
        try {
          fd = dirs.dir(dir);
        } catch {
          continue; // gone, or not a directory any more
        }
        for (const name of readdirSync(`/proc/self/fd/${fd}`)) {
          if (!name.startsWith(parsed.data.prefix)) continue;
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
