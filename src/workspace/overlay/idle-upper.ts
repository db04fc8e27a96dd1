import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { sameBytes } from './layer-diff.js';
import type { LayerStack } from './layer-stack.js';
import { readOverlayXattrs, type XattrReader } from './overlay-xattrs.js';

/** Past this many entries the check is not worth its lstats: the upper is frozen as it is. */
const MAX_ENTRIES = 1_000;
/** A file copied up bigger than this is not compared (the diff's own limit). */
const MAX_COMPARED_BYTES = 16 * 1024 * 1024;

interface UpperEntry {
  rel: string;
  stats: Stats;
}

/**
 * Whether the upper layer changes nothing in the merged view, so dropping it loses nothing.
 * That is what a run that changed nothing leaves: overlayfs copies a directory up when an
 * entry is made and removed in it, and a file when it is opened for writing, whatever is
 * then written. `git status` does both in `.git` (its lock file, an index rewritten with
 * the same bytes).
 *
 * It holds only directories and regular files, none carrying an overlay xattr (opaque),
 * and each shows below it (the frozen layers, newest first, then the workspace) as the
 * same: a directory with the same permissions and owner, a file with those and the same
 * bytes. What shows below a path is found top down: the first layer that has it decides,
 * and under a directory, a layer further down that has something else at its path is
 * where merging stops; the check gives up on an opaque directory rather than follow it.
 * Any doubt answers false: freezing an upper that changes nothing costs a layer, dropping
 * one that changes something would lose the change.
 */
export async function upperChangesNothing(
  stack: LayerStack,
  workspace: string,
  reader?: XattrReader,
): Promise<boolean> {
  const entries = upperEntries(stack.upper);
  if (entries === undefined) return false;
  const below = [...stack.layers.map((l) => l.dir).reverse(), workspace];
  /** Per upper directory: the deepest index of `below` whose entries still show under it. */
  const lowest = new Map<string, number>([['', below.length - 1]]);
  /** The layers' directories shown at an upper directory's path: none may be opaque. */
  const shown: string[] = [];
  for (const { rel, stats } of entries) {
    const slash = rel.lastIndexOf('/');
    const limit = lowest.get(slash === -1 ? '' : rel.slice(0, slash));
    if (limit === undefined) return false;
    let top: number | undefined;
    let last = limit;
    for (let i = 0; i <= limit; i++) {
      const path = join(below[i]!, rel);
      const found = lstatOrMissing(path);
      if (found === 'missing') continue;
      if (found === 'error') return false;
      if (top === undefined) {
        if (!showsSame(join(stack.upper, rel), stats, path, found)) return false;
        top = i;
        if (stats.isFile()) break;
      } else if (!found.isDirectory()) {
        last = i - 1;
        break;
      }
      if (i < below.length - 1) shown.push(path);
    }
    if (top === undefined) return false; // made by the run
    if (stats.isDirectory()) lowest.set(rel, last);
  }
  const dirs = entries.filter((e) => e.stats.isDirectory()).map((e) => join(stack.upper, e.rel));
  const xattrs = await readOverlayXattrs([stack.upper, ...dirs, ...shown], reader, false);
  return xattrs.size === 0;
}

/** The upper's entries, parents first; undefined when it holds anything but directories and files, or too many. */
function upperEntries(upper: string): UpperEntry[] | undefined {
  const entries: UpperEntry[] = [];
  const walk = (rel: string): boolean => {
    let names: string[];
    try {
      names = readdirSync(rel ? join(upper, rel) : upper);
    } catch {
      return false;
    }
    for (const name of names) {
      const path = rel ? `${rel}/${name}` : name;
      const found = lstatOrMissing(join(upper, path));
      if (typeof found === 'string' || entries.length >= MAX_ENTRIES) return false;
      if (!found.isDirectory() && !found.isFile()) return false;
      entries.push({ rel: path, stats: found });
      if (found.isDirectory() && !walk(path)) return false;
    }
    return true;
  };
  return walk('') ? entries : undefined;
}

function lstatOrMissing(path: string): Stats | 'missing' | 'error' {
  try {
    return lstatSync(path);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'error';
  }
}

/** Whether the upper's entry shows what the one below does: kind, permissions, owner, and a file's bytes. */
function showsSame(upperPath: string, upper: Stats, belowPath: string, below: Stats): boolean {
  const same =
    (upper.mode & 0o177777) === (below.mode & 0o177777) && upper.uid === below.uid && upper.gid === below.gid;
  if (!same || upper.isDirectory()) return same;
  if (upper.size !== below.size || upper.size > MAX_COMPARED_BYTES) return false;
  try {
    return sameBytes(upperPath, belowPath);
  } catch {
    return false;
  }
}
