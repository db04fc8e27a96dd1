import { lstatSync, readlinkSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { childPath } from './child-path.js';

/** What a path is after accept: from the change where it has one, else from the host. */
export type FinalEntry = { kind: 'absent' | 'dir' | 'other' } | { kind: 'symlink'; target: string };

/** The kernel's limit on symlinks followed in one lookup. */
const MAX_HOPS = 40;

/**
 * The workspace as it will be once a set of changes is applied: the host's entries,
 * overridden by the changes'. Symlinks are judged here, not lexically: `m -> .` is
 * harmless alone, but with it `l -> m/m/..` leaves the workspace, and a link that
 * resolves through a host symlink goes where that one goes.
 */
export class FinalTree {
  constructor(
    private readonly workspace: string,
    /** The changes accept would apply, by workspace-relative path. */
    private readonly changed: Map<string, FinalEntry>,
  ) {}

  /** Takes a change out (accept refuses it): the host's entry shows again. */
  drop(path: string): void {
    this.changed.delete(path);
  }

  /**
   * Where symlink `path` leads once everything is applied (workspace-relative, '' for the
   * root), or a problem: it leaves the workspace, is absolute, or loops. A component that
   * does not exist counts as a directory (something may create it later), so a target
   * is never judged by what is missing today.
   */
  resolve(path: string): { resolved: string } | { problem: string } {
    const link = this.entry(path);
    if (link.kind !== 'symlink') return { resolved: path };
    const dir = path.split('/').slice(0, -1);
    let pending = [...link.target.split('/')];
    if (isAbsolute(link.target)) return { problem: `symlink to an absolute path (${link.target})` };
    let hops = 0;
    const stack = dir;
    // Whether `stack` is a real directory on the host too (else the host's entries below it don't show).
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length === 0) return { problem: `symlink pointing outside the workspace (${link.target})` };
        stack.pop();
        continue;
      }
      const here = [...stack, part].join('/');
      const entry = this.entry(here);
      if (entry.kind === 'symlink') {
        if (++hops > MAX_HOPS) return { problem: `symlink loop (${link.target})` };
        if (isAbsolute(entry.target))
          return { problem: `symlink resolving through ${here} to an absolute path (${entry.target})` };
        pending = [...entry.target.split('/'), ...pending];
        continue;
      }
      stack.push(part);
    }
    return { resolved: stack.join('/') };
  }

  /** The entry at `path`, the change's if any, else the host's (through real host directories only). */
  private entry(path: string): FinalEntry {
    const own = this.changed.get(path);
    if (own) return own;
    // A host entry shows only if each ancestor is a directory both after the change and on the host.
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const ancestor = parts.slice(0, i).join('/');
      const changed = this.changed.get(ancestor);
      if (changed && changed.kind !== 'dir') return { kind: 'absent' };
      if (hostEntry(this.workspace, ancestor).kind !== 'dir') return { kind: 'absent' };
    }
    return hostEntry(this.workspace, path);
  }
}

function hostEntry(workspace: string, rel: string): FinalEntry {
  const path = childPath(workspace, rel);
  const stat = lstatSync(path, { throwIfNoEntry: false });
  if (!stat) return { kind: 'absent' };
  if (stat.isSymbolicLink()) return { kind: 'symlink', target: readlinkSync(path) };
  return { kind: stat.isDirectory() ? 'dir' : 'other' };
}
