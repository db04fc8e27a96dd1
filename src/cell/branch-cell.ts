import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as z from 'zod/mini';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { checkCellName } from './cell-name.js';
import { cellDir, openCell } from './cell-store.js';

/**
 * A branch cell works on a checkout of its base ref that it owns, never the host's
 * working tree: a private clone (its own `.git`, objects copied, no link back to the
 * host repo) next to the host repo. Its commits come back into the host repo only
 * through `landBranch`, run by the host's git, which reads nothing of the cell's repo
 * but objects and one ref value.
 */
const BranchRecordSchema = z.strictObject({
  branch: z.string(),
  /** The ref the user asked for (`--from`), and the commit it named when the checkout was made. */
  from: z.string(),
  base: z.string().check(z.regex(/^[0-9a-f]{40,64}$/)),
  /** The host repo's top-level directory. */
  repo: z.string(),
  checkout: z.string(),
});
export type BranchRecord = z.infer<typeof BranchRecordSchema>;

const RECORD = 'branch.json';
/** The checkout's git config as the host wrote it: put back on every landing. */
const CONFIG = 'branch-git-config';

export function readBranchRecord(paths: AgentcellPaths, cell: string): BranchRecord | undefined {
  const file = join(cellDir(paths, cell), RECORD);
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new AgentcellError('INTERNAL', `${file} is not valid JSON; remove the cell (agentcell cell rm)`, {
      cause: error,
    });
  }
  const result = BranchRecordSchema.safeParse(parsed);
  if (!result.success)
    throw new AgentcellError('INTERNAL', `${file} is corrupted (${result.error.message}); remove the cell`);
  return result.data;
}

/** The host's git, with no hooks and no fsmonitor, whatever any config says. */
function hostGit(cwd: string, args: string[]): { ok: boolean; out: string; err: string } {
  const result = spawnSync(
    'git',
    ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', '-C', cwd, ...args],
    { encoding: 'utf8', env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } },
  );
  return { ok: result.status === 0, out: (result.stdout ?? '').trim(), err: (result.stderr ?? '').trim() };
}

function mustGit(cwd: string, args: string[], what: string): string {
  const result = hostGit(cwd, args);
  if (!result.ok) throw new AgentcellError('WORKSPACE_INVALID', `${what}: git ${args.join(' ')}: ${result.err}`);
  return result.out;
}

/** The default cell of a branch: its name, made a valid cell name. */
export function branchCellName(branch: string): string {
  const name = branch
    .replace(/[^a-zA-Z0-9._-]+/g, '-')
    .replace(/^[^a-zA-Z0-9]+/, '')
    .slice(0, 63);
  return checkCellName(name || 'branch');
}

export interface BranchCellRequest {
  paths: AgentcellPaths;
  /** A directory inside the host repo. */
  workspace: string;
  branch: string;
  /** Default: the branch when the host repo has it, else HEAD. */
  from?: string;
  cell?: string;
  dryRun?: boolean;
}

export interface BranchCell {
  cell: string;
  record: BranchRecord;
  /** The checkout was made now (false: the cell's existing checkout is reused). */
  created: boolean;
}

/**
 * Opens a branch cell, making its checkout on first use with the host's git: a clone
 * of the host repo (objects copied, so the cell's repo never writes into the host's)
 * at `<repo>.cells/<cell>` beside the repo, on a new branch NAME at REF. Outside
 * agentcell's state dir because the cell sees its workspace and must never see that.
 * `dryRun` works out the same record and makes nothing.
 */
export function openBranchCell(request: BranchCellRequest): BranchCell {
  const { paths, branch } = request;
  const repo = mustGit(
    request.workspace,
    ['rev-parse', '--show-toplevel'],
    `${request.workspace} is not in a git repo`,
  );
  if (!hostGit(repo, ['check-ref-format', '--branch', branch]).ok || branch.startsWith('-'))
    throw new AgentcellError('USAGE', `--branch ${branch}: not a valid git branch name`);
  const cell = request.cell !== undefined ? checkCellName(request.cell) : branchCellName(branch);
  const existing = readBranchRecord(paths, cell);
  if (existing) {
    if (existing.branch !== branch || existing.repo !== repo)
      throw new AgentcellError(
        'CELL_CONFLICT',
        `cell ${cell} works on branch ${existing.branch} of ${existing.repo}; pick another --cell name`,
      );
    return { cell, record: existing, created: false };
  }
  if (hostGit(repo, ['symbolic-ref', '--quiet', 'HEAD']).out === `refs/heads/${branch}`)
    throw new AgentcellError(
      'USAGE',
      `--branch ${branch} is checked out in ${repo}: landing would move the branch under your working tree; pick another branch name`,
    );
  const hasBranch = hostGit(repo, ['rev-parse', '--verify', '--quiet', `refs/heads/${branch}`]).ok;
  const from = request.from ?? (hasBranch ? branch : 'HEAD');
  const base = mustGit(repo, ['rev-parse', '--verify', '--end-of-options', `${from}^{commit}`], `--from ${from}`);
  const checkout = join(dirname(repo), `${basename(repo)}.cells`, cell);
  const record: BranchRecord = { branch, from, base, repo, checkout };
  if (request.dryRun) return { cell, record, created: true };
  if (existsSync(checkout))
    throw new AgentcellError('FILE_EXISTS', `${checkout} already exists; remove it or pick another --cell name`);
  makeDirs(dirname(checkout), 0o700);
  // --no-hardlinks: the cell's objects are its own files, never links to the host's.
  // --template=: no sample hooks; an empty hooks dir is made so the cell sees it read-only.
  mustGit(
    dirname(checkout),
    ['clone', '--quiet', '--no-hardlinks', '--no-checkout', '--template=', '--', repo, checkout],
    `checking out ${from}`,
  );
  mkdirSync(join(checkout, '.git', 'hooks'));
  mustGit(checkout, ['remote', 'remove', 'origin'], 'checkout');
  const name = hostGit(repo, ['config', 'user.name']).out || `agentcell ${cell}`;
  const email = hostGit(repo, ['config', 'user.email']).out || `agentcell+${cell}@localhost`;
  mustGit(checkout, ['config', 'user.name', name], 'checkout');
  mustGit(checkout, ['config', 'user.email', email], 'checkout');
  mustGit(checkout, ['checkout', '--quiet', '-B', branch, base], `checking out ${from}`);
  openCell(paths, cell, checkout);
  writeFileAtomic(join(cellDir(paths, cell), CONFIG), readFileSync(join(checkout, '.git', 'config')));
  writeFileAtomic(join(cellDir(paths, cell), RECORD), `${JSON.stringify(record, null, 2)}\n`);
  return { cell, record, created: true };
}

/**
 * A fork of a branch cell is a branch cell on the same branch and checkout: its layers
 * are changes to that checkout (commits on that branch among them), so the forks are
 * candidates for the one branch, and the one accepted lands it.
 */
export function copyBranchRecord(paths: AgentcellPaths, from: string, to: string): void {
  if (!readBranchRecord(paths, from)) return;
  for (const file of [RECORD, CONFIG])
    writeFileAtomic(join(cellDir(paths, to), file), readFileSync(join(cellDir(paths, from), file)));
}

export interface LandReport {
  branch: string;
  /** The branch's commit in the host repo after landing (undefined: nothing to land). */
  commit?: string;
  /** The commit the cell started from. */
  base: string;
}

/**
 * Brings the cell's branch into the host repo as `refs/heads/NAME`, with the host's git.
 * It never runs git in the cell's repo (whose config, hooks and attributes the cell may
 * have written): it reads the branch's commit id from the ref file, and fetches from a
 * fresh bare repo made here whose only link to the cell's is `objects/info/alternates`.
 * Fetch checks every object (`transfer.fsckObjects`) and never checks anything out, so
 * no filter, hook or fsmonitor of the cell's runs; a non-fast-forward is refused.
 */
export function landBranch(paths: AgentcellPaths, cell: string): LandReport {
  const record = readBranchRecord(paths, cell);
  if (!record) throw new AgentcellError('CELL_NOT_FOUND', `cell ${cell} is not a branch cell (run --branch)`);
  const gitDir = join(record.checkout, '.git');
  resetControlPlane(paths, cell, gitDir);
  const tip = readBranchTip(gitDir, record.branch);
  const report: LandReport = { branch: record.branch, base: record.base };
  if (tip === undefined || tip === record.base) return report;
  if (existsSync(join(gitDir, 'objects', 'info', 'alternates')))
    throw new AgentcellError(
      'ACCEPT_REFUSED',
      `${gitDir}/objects/info/alternates exists: the cell's repo would borrow objects from elsewhere on the host; not landed`,
    );
  const land = join(cellDir(paths, cell), 'land.git');
  rmSync(land, { recursive: true, force: true });
  mustGit(cellDir(paths, cell), ['init', '--quiet', '--bare', '--template=', land], 'landing');
  makeDirs(join(land, 'objects', 'info'));
  writeFileSync(join(land, 'objects', 'info', 'alternates'), `${join(gitDir, 'objects')}\n`);
  makeDirs(join(land, 'refs', 'heads'));
  writeFileSync(join(land, 'refs', 'heads', 'landing'), `${tip}\n`);
  const fetched = hostGit(record.repo, [
    '-c',
    'protocol.file.allow=always',
    '-c',
    'transfer.fsckObjects=true',
    'fetch',
    '--quiet',
    '--no-tags',
    '--no-write-fetch-head',
    '--no-recurse-submodules',
    '--',
    land,
    `refs/heads/landing:refs/heads/${record.branch}`,
  ]);
  rmSync(land, { recursive: true, force: true });
  if (!fetched.ok)
    throw new AgentcellError(
      'ACCEPT_REFUSED',
      `landing ${record.branch} in ${record.repo} failed (the cell's changes are applied to ${record.checkout}): ${fetched.err}`,
    );
  return { ...report, commit: tip };
}

/**
 * Puts the checkout's git config back as the host wrote it and empties its hooks: an
 * `accept --force` may have applied the cell's, and the host's git reads the checkout
 * (the next run's `git status`, a user's `cd`) — never with the cell's fsmonitor or filters.
 */
function resetControlPlane(paths: AgentcellPaths, cell: string, gitDir: string): void {
  writeFileAtomic(join(gitDir, 'config'), readFileSync(join(cellDir(paths, cell), CONFIG)), 0o644);
  rmSync(join(gitDir, 'hooks'), { recursive: true, force: true });
  mkdirSync(join(gitDir, 'hooks'));
}

/** The branch's commit id from the cell repo's files (loose ref, else packed-refs); never through git. */
function readBranchTip(gitDir: string, branch: string): string | undefined {
  const isId = (value: string): boolean => /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(value);
  const loose = join(gitDir, 'refs', 'heads', branch);
  const stat = lstatSync(loose, { throwIfNoEntry: false });
  if (stat?.isFile()) {
    const value = readFileSync(loose, 'utf8').trim();
    if (!isId(value)) throw new AgentcellError('ACCEPT_REFUSED', `${loose} holds no commit id; not landed`);
    return value;
  }
  const packed = join(gitDir, 'packed-refs');
  if (!lstatSync(packed, { throwIfNoEntry: false })?.isFile()) return undefined;
  for (const line of readFileSync(packed, 'utf8').split('\n')) {
    const [id, ref] = line.split(' ');
    if (ref === `refs/heads/${branch}` && id !== undefined && isId(id)) return id;
  }
  return undefined;
}
