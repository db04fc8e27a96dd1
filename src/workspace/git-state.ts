import { execFile } from 'node:child_process';

export interface GitState {
  /** The commit HEAD points at, or null outside a repository (or before the first commit). */
  gitRef: string | null;
  /** Uncommitted changes to tracked files, or null outside a repository. */
  gitDirty: boolean | null;
}

/**
 * The workspace's git state for the receipt. Started before the command runs and awaited
 * after, so it never adds to the run's latency; an absent git or repo gives nulls.
 */
export function readGitState(workspace: string): Promise<GitState> {
  const git = (args: string[]): Promise<string | null> =>
    new Promise((resolve) => {
      execFile('git', ['-C', workspace, ...args], { encoding: 'utf8', timeout: 10_000 }, (error, stdout) =>
        resolve(error ? null : stdout),
      );
    });
  return Promise.all([
    git(['rev-parse', '--verify', '-q', 'HEAD']),
    git(['status', '--porcelain', '--untracked-files=no']),
  ]).then(([ref, status]) => ({
    gitRef: ref === null ? null : ref.trim() || null,
    gitDirty: status === null ? null : status.trim().length > 0,
  }));
}
