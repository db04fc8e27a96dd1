import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { removeTrees } from '../../_internal/remove-trees.js';

/**
 * Dropped layers are renamed into the cell's trash/ (constant time) and deleted
 * afterwards, in the background (purgeInBackground in _internal/remove-trees.ts).
 */
export function trashDirOf(cellDir: string): string {
  return join(cellDir, 'trash');
}

/** Deletes everything in a cell's trash/ now (leftovers of interrupted purges; tests). */
export function purgeTrash(cellDir: string): void {
  const trash = trashDirOf(cellDir);
  let names: string[];
  try {
    names = readdirSync(trash);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  removeTrees(names.map((n) => join(trash, n)));
}
