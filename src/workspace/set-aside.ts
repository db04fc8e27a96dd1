import { promises as fs, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { PinnedDirs } from './pinned-dirs.js';

/**
 * Where accept puts the workspace entries it replaces or deletes: a directory beside the
 * cell's layers, which the caller deletes in the background afterwards. Freeing an inode
 * is most of the cost of replacing a file on ext4 (about 1 ms, against 0.03 ms for a link
 * that keeps it alive), so accept only moves names, and the freeing happens after it.
 * Where the directory is on another filesystem than the workspace, entries are removed
 * in place instead. Workspace entries are named through PinnedDirs, so a directory
 * swapped for a symlink meanwhile is never followed.
 */
export class SetAside {
  #count = 0;
  #usable: boolean;

  constructor(
    private readonly dir: string | undefined,
    private readonly workspace: PinnedDirs,
  ) {
    this.#usable = dir !== undefined;
  }

  /** Takes a workspace entry (a file, a symlink or a whole tree; workspace-relative) out, without following it. */
  remove(rel: string): void {
    if (!this.workspace.lstat(rel)) return; // gone already (e.g. inside a directory removed before it)
    if (this.#usable) {
      try {
        renameSync(this.workspace.at(rel), this.#next());
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
        this.#usable = false;
      }
    }
    this.workspace.removeTree(rel);
  }

  /**
   * Keeps a file (its kernel path, from PinnedDirs) that is about to be replaced alive here, so the rename over it frees
   * nothing. A directory or a missing target is left alone (link fails; nothing to keep).
   */
  async keep(target: string): Promise<void> {
    if (!this.#usable) return;
    try {
      await fs.link(target, this.#next());
    } catch (error) {
      // Only an optimisation: without the link the rename frees the file itself.
      if ((error as NodeJS.ErrnoException).code === 'EXDEV') this.#usable = false;
    }
  }

  #next(): string {
    return join(this.dir!, `${this.#count++}`);
  }
}
