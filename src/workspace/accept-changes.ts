import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import { dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { isControlPlanePath } from './control-plane.js';

export type ChangeKind = 'added' | 'modified' | 'deleted';

export interface WorkspaceChange {
  /** Relative to the workspace, '/'-separated. */
  path: string;
  change: ChangeKind;
}

export interface AcceptRequest {
  workspace: string;
  changes: readonly WorkspaceChange[];
  /** Where the new content of an added or modified path is (a file in a layer). */
  sourceOf: (path: string) => string | undefined;
  /** Apply control-plane changes too. */
  force: boolean;
  dryRun: boolean;
}

export interface AcceptResult {
  applied: WorkspaceChange[];
  refused: { path: string; reason: string }[];
}

/**
 * Applies a cell's changes to the host workspace, one path at a time, each atomically
 * (written beside its target, then renamed over it). It never follows a symlink on the
 * host side, never writes outside the workspace, copies no device, fifo or socket, drops
 * setuid/setgid/sticky bits, and leaves the repo's control plane alone unless forced.
 */
export function acceptChanges(request: AcceptRequest): AcceptResult {
  const result: AcceptResult = { applied: [], refused: [] };
  const host = new HostDirs(request.workspace);
  // Deletions of a directory come before additions inside its replacement.
  const ordered = [...request.changes].sort(
    (a, b) => Number(b.change === 'deleted') - Number(a.change === 'deleted') || a.path.localeCompare(b.path),
  );
  for (const change of ordered) {
    const reason = refusal(change, request, host);
    if (reason) {
      result.refused.push({ path: change.path, reason });
      continue;
    }
    if (!request.dryRun) apply(change, request, host);
    result.applied.push(change);
  }
  return result;
}

function refusal(change: WorkspaceChange, request: AcceptRequest, host: HostDirs): string | undefined {
  const path = change.path;
  if (path === '' || isAbsolute(path) || normalize(path) !== path || path.split('/').includes('..'))
    return 'path is not a plain relative path inside the workspace';
  if (isControlPlanePath(path) && !request.force)
    return 'control-plane file (executed or trusted by the host); accept with --force after review';
  const parentProblem = host.parentProblem(path);
  if (parentProblem) return parentProblem;
  if (change.change === 'deleted') return undefined;
  const source = request.sourceOf(path);
  if (source === undefined) return 'no content for this change in the cell layers';
  const stat = lstatSync(source);
  if (stat.isSymbolicLink()) return symlinkProblem(request.workspace, path, readlinkSync(source));
  if (!stat.isFile() && !stat.isDirectory()) return `a ${fileType(stat)} cannot be accepted`;
  return undefined;
}

/**
 * The host side of the workspace's directories, checked once each per accept: a
 * thousand files in forty directories cost forty checks, not three thousand lstats.
 * What accept itself does to a directory (deleting it, creating it) keeps the answers
 * true: it only ever makes real directories.
 */
class HostDirs {
  readonly #problems = new Map<string, string | undefined>();
  readonly #made = new Set<string>();

  constructor(private readonly workspace: string) {}

  /** Every existing ancestor of the target must be a real directory inside the workspace. */
  parentProblem(path: string): string | undefined {
    const parts = path.split('/');
    let current = this.workspace;
    for (const part of parts.slice(0, -1)) {
      current = join(current, part);
      let problem = this.#problems.get(current);
      if (!this.#problems.has(current)) {
        problem = directoryProblem(current);
        this.#problems.set(current, problem);
      }
      if (problem === MISSING) return undefined; // created as a real directory on apply
      if (problem) return problem;
    }
    return undefined;
  }

  /** mkdir -p of a target's parent, once per directory. */
  makeParent(target: string): void {
    const dir = dirname(target);
    if (this.#made.has(dir)) return;
    mkdirSync(dir, { recursive: true });
    this.#made.add(dir);
  }

  /** A directory accept removed (to put a file there): its children's answers are void. */
  forget(target: string): void {
    for (const dir of [...this.#made]) if (dir === target || dir.startsWith(target + sep)) this.#made.delete(dir);
  }
}

const MISSING = '';

function directoryProblem(path: string): string | undefined {
  let stat: Stats;
  try {
    stat = lstatSync(path);
  } catch {
    return MISSING;
  }
  if (stat.isSymbolicLink()) return `${path} is a symlink on the host; refusing to write through it`;
  if (!stat.isDirectory()) return `${path} is not a directory on the host`;
  return undefined;
}

function symlinkProblem(workspace: string, path: string, target: string): string | undefined {
  if (isAbsolute(target)) return `symlink to an absolute path (${target})`;
  const resolved = resolve(workspace, dirname(path), target);
  if (resolved !== workspace && !resolved.startsWith(workspace + sep))
    return `symlink pointing outside the workspace (${target})`;
  return undefined;
}

function apply(change: WorkspaceChange, request: AcceptRequest, host: HostDirs): void {
  const target = join(request.workspace, change.path);
  if (change.change === 'deleted') {
    removeHostPath(target);
    host.forget(target);
    return;
  }
  const source = request.sourceOf(change.path) as string;
  const stat = lstatSync(source);
  host.makeParent(target);
  if (stat.isDirectory()) {
    const existing = lstatOrUndefined(target);
    if (existing && !existing.isDirectory()) removeHostPath(target);
    if (!existing || !existing.isDirectory()) mkdirSync(target);
    chmodSync(target, stat.mode & 0o777);
    return;
  }
  const existing = lstatOrUndefined(target);
  // A new file can be linked straight into place: link(2) is atomic, so no temp and rename.
  if (!existing && stat.isFile() && linkInto(source, target, stat.nlink)) {
    if ((stat.mode & 0o7000) !== 0) chmodSync(target, stat.mode & 0o777); // no setuid, setgid or sticky bit
    return;
  }
  const temp = join(dirname(target), `.agentcell-accept-${randomBytes(6).toString('hex')}`);
  if (stat.isSymbolicLink()) symlinkSync(readlinkSync(source), temp);
  else {
    placeFile(source, temp, stat.nlink);
    chmodSync(temp, stat.mode & 0o777); // no setuid, setgid or sticky bit survives
  }
  if (existing?.isDirectory()) {
    removeHostPath(target);
    host.forget(target);
  }
  renameSync(temp, target);
}

/**
 * Puts a layer file's content at `temp`. A hard link when the layer is on the
 * workspace's filesystem and nothing else links the file (no data copied; the layer is
 * dropped right after accept, so the inode ends up the workspace's alone), a copy
 * otherwise: a forked cell hard-links its layers, and must never see the workspace's
 * later edits.
 */
function placeFile(source: string, temp: string, links: number): void {
  if (!linkInto(source, temp, links)) copyFileSync(source, temp);
}

/** Hard-links a layer file that nothing else links; false where a link can't be made (another filesystem). */
function linkInto(source: string, target: string, links: number): boolean {
  if (links > 1) return false;
  try {
    linkSync(source, target);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK') return false;
    throw error;
  }
}

/** Removes a path without following it if it is a symlink. */
function removeHostPath(target: string): void {
  const stat = lstatOrUndefined(target);
  if (!stat) return;
  if (stat.isDirectory()) rmSync(target, { recursive: true, force: true });
  else unlinkSync(target);
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function fileType(stat: Stats): string {
  if (stat.isFIFO()) return 'fifo';
  if (stat.isSocket()) return 'socket';
  if (stat.isCharacterDevice()) return 'character device';
  if (stat.isBlockDevice()) return 'block device';
  return 'special file';
}
