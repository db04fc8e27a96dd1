import { spawnSync } from 'node:child_process';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';

/** A repository inside the workspace whose objects the cell can read. */
export interface WorkspaceRepository {
  /** The work tree, relative to the workspace ('' for the workspace itself). */
  dir: string;
  /** Its git directory (a `.git` dir, or where a `.git` file points), absolute. */
  gitDir: string;
}

/**
 * The git directory of the repository at `dir`, if it lies inside the workspace: a
 * `.git` directory, or the one a `.git` file names (submodules). A git dir outside the
 * workspace (a linked worktree's) is not in the cell, so it is not returned.
 */
export function workspaceRepository(realWorkspace: string, dir: string): WorkspaceRepository | undefined {
  const dotGit = join(realWorkspace, dir, '.git');
  let gitDir = dotGit;
  try {
    if (statSync(dotGit).isFile()) {
      const pointer = /^gitdir:\s*(.+?)\s*$/m.exec(readFileSync(dotGit, 'utf8'))?.[1];
      if (!pointer) return undefined;
      gitDir = realpathSync(resolve(join(realWorkspace, dir), pointer));
    }
  } catch {
    return undefined;
  }
  const rel = relative(realWorkspace, gitDir);
  if (rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) return undefined;
  return { dir, gitDir };
}

/**
 * Identifies one version of a repository's index: it is rewritten whenever what git
 * tracks changes (a new file renamed into place: a new inode and ctime, though a freed
 * inode number comes back). Empty when the index changed at or after `settledBefore`
 * (ms): a next version written within the same timestamp tick could look the same.
 */
export function indexStamp(gitDir: string, settledBefore: number): string | undefined {
  try {
    const s = statSync(join(gitDir, 'index'), { bigint: true });
    if (Number(s.mtimeMs) >= settledBefore || Number(s.ctimeMs) >= settledBefore) return '';
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch {
    return undefined; // nothing staged or committed yet
  }
}

/**
 * The paths in a repository's index (tracked or staged: their blobs are in its objects),
 * listed by the host's git as data only: no system or global config, fsmonitor off, no
 * optional locks, no pager, nothing of the caller's GIT_* environment. `ls-files` runs
 * no hooks. Throws with git's reason when it can't list them.
 */
export function trackedPaths(repo: WorkspaceRepository, realWorkspace: string): string[] {
  const workTree = join(realWorkspace, repo.dir);
  const result = spawnSync(
    'git',
    [
      '-c',
      'core.fsmonitor=false',
      '-c',
      'safe.directory=*',
      `--git-dir=${repo.gitDir}`,
      `--work-tree=${workTree}`,
      'ls-files',
      '-z',
      '--cached',
    ],
    {
      cwd: workTree,
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      timeout: 20_000,
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: '/nonexistent',
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_CONFIG_GLOBAL: '/dev/null',
        GIT_OPTIONAL_LOCKS: '0',
        GIT_TERMINAL_PROMPT: '0',
        LC_ALL: 'C',
      },
    },
  );
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(result.stderr.trim() || `git ls-files exited ${String(result.status)}`);
  return result.stdout.split('\0').filter(Boolean);
}
