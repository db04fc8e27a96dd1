import { spawnSync } from 'node:child_process';
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { childPath } from './child-path.js';

export interface MergeRequest {
  /** Where the merged file is written (the cell's own dir, never the workspace). */
  scratchDir: string;
  workspace: string;
  path: string;
  /** The host's content when the run began (accept-baseline keeps it). */
  base: string;
  /** The cell's version of the path. */
  cellFile: string;
}

export type MergeOutcome =
  { path: string; merged: true; file: string; conflicts: number } | { path: string; merged: false; reason: string };

/**
 * Merges a host edit made since the run with the cell's change of the same file, three
 * ways from the content both started from, with `git merge-file` (the host's git, no
 * repository involved: nothing of the workspace's config or hooks runs). Where both sides
 * changed the same lines the result holds conflict markers, exactly where git would put them.
 */
export function mergeWithHost(request: MergeRequest): MergeOutcome {
  const { path } = request;
  const host = childPath(request.workspace, path);
  const hostStat = lstatSync(host, { throwIfNoEntry: false });
  if (!hostStat?.isFile()) return { path, merged: false, reason: 'the host no longer has a regular file there' };
  const cellStat = lstatSync(request.cellFile, { throwIfNoEntry: false });
  if (!cellStat?.isFile()) return { path, merged: false, reason: 'the cell made it something other than a file' };
  const labels = ['-L', `${path} (host)`, '-L', `${path} (run start)`, '-L', `${path} (cell)`];
  const result = spawnSync('git', ['merge-file', '-p', ...labels, host, request.base, request.cellFile], {
    maxBuffer: 64 * 1024 * 1024,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C' },
  });
  if (result.error) return { path, merged: false, reason: `git merge-file could not run: ${result.error.message}` };
  // Its exit status is the number of conflicts; a negative one (255 here) is an error, e.g. a binary file.
  if (result.status === null || result.status > 127)
    return { path, merged: false, reason: `git merge-file refused it: ${result.stderr.toString().trim() || 'error'}` };
  makeDirs(request.scratchDir, 0o700);
  const file = join(request.scratchDir, `${result.pid}-${path.replaceAll('/', '%')}`);
  writeFileAtomic(file, result.stdout, cellStat.mode & 0o777);
  return { path, merged: true, file, conflicts: result.status };
}
