import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface GitState {
  /** The commit HEAD points at, or null outside a repository (or before the first commit). */
  gitRef: string | null;
  /** Uncommitted changes to tracked files, or null outside a repository. */
  gitDirty: boolean | null;
  /** `git status` per path (porcelain XY code), or null outside a repository. */
  status: Map<string, string> | null;
}

export interface GitStateOptions {
  /**
   * Whether `status` lists untracked files (default true). Without them git does not read
   * every directory of the worktree: a third less at 100,000 files. `gitRef` and
   * `gitDirty` are the same either way (untracked files do not make a tree dirty).
   */
  untracked?: boolean;
}

/**
 * The workspace's git state, for receipts. Started before the command runs and awaited
 * after, so it only adds to a run shorter than itself; an absent git or repo gives nulls.
 */
export async function readGitState(workspace: string, options: GitStateOptions = {}): Promise<GitState> {
  if (!insideRepository(workspace)) return { gitRef: null, gitDirty: null, status: null };
  // One git process for both: porcelain v2's `# branch.oid` header is what `rev-parse HEAD` says
  // (without counting commits ahead of the upstream, which can walk a long history).
  const output = await git(workspace, [
    'status',
    '--porcelain=v2',
    '--branch',
    '--no-ahead-behind',
    '-z',
    `--untracked-files=${options.untracked === false ? 'no' : 'all'}`,
  ]);
  if (output === null) return { gitRef: null, gitDirty: null, status: null };
  const { head, entries } = parsePorcelainV2(output);
  return {
    gitRef: head,
    gitDirty: [...entries.values()].some((code) => code !== '??'),
    status: entries,
  };
}

/**
 * What a direct-mode run changed, as git sees it: paths whose status differs between
 * before and after. A file that was already modified and was modified again does not
 * show; receipts of direct runs say so (overlay runs count exactly).
 */
export function countGitChanges(
  before: GitState,
  after: GitState,
): { added: number; modified: number; deleted: number } {
  const counts = { added: 0, modified: 0, deleted: 0 };
  if (!before.status || !after.status) return counts;
  for (const [path, code] of after.status) {
    if (before.status.get(path) === code) continue;
    if (code === '??' || code.includes('A')) counts.added++;
    else if (code.includes('D')) counts.deleted++;
    else counts.modified++;
  }
  for (const path of before.status.keys()) if (!after.status.has(path)) counts.modified++;
  return counts;
}

/** A `.git` here or above: outside one, two git processes per run would only say "not a repository". */
function insideRepository(workspace: string): boolean {
  for (let dir = workspace; ; dir = dirname(dir)) {
    if (existsSync(join(dir, '.git'))) return true;
    if (dirname(dir) === dir) return false;
  }
}

/**
 * `git status --porcelain=v2 --branch -z`: the HEAD commit (null before the first commit)
 * and each path's XY code in v1's spelling (`.` is v1's space, untracked is `??`).
 */
function parsePorcelainV2(output: string): { head: string | null; entries: Map<string, string> } {
  const entries = new Map<string, string>();
  let head: string | null = null;
  const fields = output.split('\0');
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    const kind = field[0];
    if (kind === '#') {
      const oid = /^# branch\.oid ([0-9a-f]+)$/.exec(field);
      if (oid) head = oid[1]!;
    } else if (kind === '?') {
      entries.set(field.slice(2), '??');
    } else if (kind === '1' || kind === '2' || kind === 'u') {
      // The path comes after a fixed number of fields: 8 (ordinary), 9 (rename/copy: + score), 10 (unmerged).
      const before = kind === '1' ? 8 : kind === '2' ? 9 : 10;
      const parts = field.split(' ');
      entries.set(parts.slice(before).join(' '), parts[1]!.replaceAll('.', ' '));
      if (kind === '2') i++; // the rename's source follows
    }
  }
  return { head, entries };
}

function git(workspace: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    // --no-optional-locks: reading the state never rewrites the index (a cell's baseline
    // would see .git/index "changed by the host" during the run); no fsmonitor runs.
    execFile(
      'git',
      ['--no-optional-locks', '-c', 'core.fsmonitor=false', '-C', workspace, ...args],
      { encoding: 'utf8', timeout: 10_000, maxBuffer: 256 * 1024 * 1024 },
      (error, stdout) => resolve(error ? null : stdout),
    );
  });
}
