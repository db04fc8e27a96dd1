import { closeSync, constants, fstatSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { AgentcellError } from '../errors.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { PinnedDirs } from '../workspace/pinned-dirs.js';

/**
 * Files agentcell writes into, and reads back from, an agent's home (`<cell>/agent-home`),
 * which the cell writes too. Every directory is opened without following symlinks
 * (PinnedDirs: one component at a time, O_NOFOLLOW) and the file itself is replaced by
 * rename or opened O_NOFOLLOW, so a link the agent planted (`~/.claude` → a host dir,
 * `~/.claude.json` → a host file) can't send a host write, or a host read, out of the home.
 */
export class AgentHome {
  readonly #dirs: PinnedDirs;

  constructor(readonly home: string) {
    makeDirs(home, 0o700);
    this.#dirs = new PinnedDirs(home);
  }

  /**
   * Writes `rel` whole (atomic-file.ts), making its parent directories. Not fsynced: what
   * agentcell writes here (seeds, copies of stored logins) is written again before every
   * run, and the fsyncs cost milliseconds before each agent starts.
   */
  write(rel: string, data: string | Uint8Array, mode = 0o600): void {
    let path: string;
    try {
      path = this.#dirs.at(rel, true);
    } catch (error) {
      const code = ((error as Error).cause as NodeJS.ErrnoException | undefined)?.code ?? 'error';
      throw new AgentcellError(
        'PATH_UNUSABLE',
        `${join(this.home, rel)}: a directory on the way in the agent's home is a symlink or not a directory (${code}); agentcell writes nothing through it: remove it`,
        { cause: error },
      );
    }
    writeFileAtomic(path, data, mode, { durable: false });
  }

  /** The content of regular file `rel`; undefined when it is missing or not a plain file (a symlink, say). */
  read(rel: string): Buffer | undefined {
    let fd: number;
    try {
      // ENOENT, ENOTDIR or ELOOP on the way (a symlink is not the agent's file, whatever it points at).
      fd = openSync(this.#dirs.at(rel), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      return undefined;
    }
    try {
      return fstatSync(fd).isFile() ? readFileSync(fd) : undefined;
    } finally {
      closeSync(fd);
    }
  }

  /** Removes `rel` if it is there (a symlink itself, never what it points at). */
  remove(rel: string): void {
    let path: string;
    try {
      path = this.#dirs.at(rel);
    } catch {
      return; // nothing reachable there without following a link
    }
    rmSync(path, { force: true });
  }

  close(): void {
    this.#dirs.close();
  }
}
