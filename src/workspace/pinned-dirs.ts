import {
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmdirSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import { AgentcellError } from '../errors.js';

/** Linux's O_PATH (Node does not export it): a handle for lookups, needing no read permission. */
const O_PATH = 0o10000000;
const DIR_FLAGS = constants.O_DIRECTORY | constants.O_NOFOLLOW | O_PATH;

/**
 * The workspace's directories held open by file descriptor, for the duration of one
 * accept: openat(2) for Node. Each directory is opened one component at a time from
 * the workspace root's descriptor with O_NOFOLLOW, and every write names its target as
 * `/proc/self/fd/<parent>/<name>`, which the kernel resolves through the descriptor's
 * real directory (a magic link), not through the path. So a directory swapped for a
 * symlink while accept runs can never redirect a write out of the workspace: opening
 * the symlink fails (ENOTDIR), and a directory moved away still gets its own files.
 * Each directory is opened once per accept (a thousand files in forty directories cost
 * forty opens).
 */
export class PinnedDirs {
  readonly #fds = new Map<string, number>();

  constructor(workspace: string) {
    this.#fds.set('', openSync(workspace, constants.O_DIRECTORY | O_PATH));
  }

  /**
   * The kernel path of entry `rel` (workspace-relative) inside its pinned parent; the
   * parent is opened (and with `create`, made) first. No-follow on the last component is
   * the caller's: rename, link, unlink, mkdir, symlink and lstat never follow it.
   */
  at(rel: string, create = false): string {
    const slash = rel.lastIndexOf('/');
    const name = slash < 0 ? rel : rel.slice(slash + 1);
    if (name === '' || name === '.' || name === '..')
      throw new AgentcellError('INTERNAL', `${rel} is not a plain relative path inside the workspace`);
    const parent = this.dir(slash < 0 ? '' : rel.slice(0, slash), create);
    return `/proc/self/fd/${parent}/${name}`;
  }

  /** The descriptor of directory `rel`, opened no-follow component by component. */
  dir(rel: string, create = false): number {
    const known = this.#fds.get(rel);
    if (known !== undefined) return known;
    const path = this.at(rel, create);
    let fd: number;
    try {
      fd = openSync(path, DIR_FLAGS);
    } catch (error) {
      if (!create || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw changedOnHost(rel, error);
      try {
        mkdirSync(path);
      } catch (mkdirError) {
        if ((mkdirError as NodeJS.ErrnoException).code !== 'EEXIST') throw changedOnHost(rel, mkdirError);
      }
      try {
        fd = openSync(path, DIR_FLAGS);
      } catch (openError) {
        throw changedOnHost(rel, openError);
      }
    }
    this.#fds.set(rel, fd);
    return fd;
  }

  /** lstat of an entry, or undefined when there is none. */
  lstat(rel: string): Stats | undefined {
    let path: string;
    try {
      path = this.at(rel);
    } catch (error) {
      if ((error as Error).cause && ((error as Error).cause as NodeJS.ErrnoException).code === 'ENOENT')
        return undefined;
      throw error;
    }
    return lstatSync(path, { throwIfNoEntry: false });
  }

  /** A directory removed or replaced: its descriptor and those below it are void. */
  forget(rel: string): void {
    for (const [dir, fd] of this.#fds)
      if (dir !== '' && (dir === rel || dir.startsWith(`${rel}/`))) {
        closeSync(fd);
        this.#fds.delete(dir);
      }
  }

  /** Removes an entry and, for a directory, all it holds, never following a symlink. */
  removeTree(rel: string): void {
    const stat = this.lstat(rel);
    if (!stat) return;
    if (!stat.isDirectory()) return unlinkSync(this.at(rel));
    const fd = this.dir(rel);
    for (const name of readdirSync(`/proc/self/fd/${fd}`)) this.removeTree(`${rel}/${name}`);
    this.forget(rel);
    rmdirSync(this.at(rel));
  }

  close(): void {
    for (const fd of this.#fds.values()) closeSync(fd);
    this.#fds.clear();
  }
}

/** A directory of the workspace that is not one any more (a symlink now, or gone). */
export function changedOnHost(rel: string, cause: unknown): AgentcellError {
  const code = (cause as NodeJS.ErrnoException).code ?? 'error';
  return new AgentcellError(
    'ACCEPT_INTERRUPTED',
    `${rel || '.'} changed on the host while accept ran (${code}); nothing was written through it`,
    { cause },
  );
}
