import { randomBytes } from 'node:crypto';
import { chmodSync, promises as fs, lstatSync, mkdirSync, readlinkSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { childPath } from './child-path.js';
import { isControlPlanePath } from './control-plane.js';
import type { LayerEntry } from './overlay/layer-diff.js';
import { SetAside } from './set-aside.js';
import { makeDirs } from '../make-dirs.js';

export type ChangeKind = 'added' | 'modified' | 'deleted';

export interface WorkspaceChange {
  /** Relative to the workspace, '/'-separated. */
  path: string;
  change: ChangeKind;
}

export interface AcceptRequest {
  workspace: string;
  changes: readonly WorkspaceChange[];
  /** Where the new content of an added or modified path is (an entry in a layer) and its lstat. */
  sourceOf: (path: string) => LayerEntry | undefined;
  /** Apply control-plane changes too. */
  force: boolean;
  /**
   * lstat results for host paths, from the diff that found the changes moments before,
   * under the same cell lock (undefined: nothing there). Paths not in it are read now.
   */
  knownStats?: ReadonlyMap<string, Stats | undefined>;
}

export interface AcceptResult {
  applied: WorkspaceChange[];
  refused: { path: string; reason: string }[];
}

/** Files applied at once: renames in different directories overlap in the kernel (about 2× on ext4). */
const CONCURRENCY = 8;

/**
 * Checks a cell's changes against the host workspace, changing nothing: what `apply`
 * would apply, and what it refuses and why (`--dry-run`, and `diff`'s flags).
 */
export function planAccept(request: AcceptRequest): AcceptPlan {
  const plan = new AcceptPlan(request.workspace, request.knownStats);
  // Deletions of a directory come before additions inside its replacement; then by path,
  // in code-unit order, which puts a directory before what is in it (and, unlike
  // localeCompare, costs nothing: that sort was 20 ms of a cold accept of 1,000 files).
  const ordered = [...request.changes].sort(
    (a, b) =>
      Number(b.change === 'deleted') - Number(a.change === 'deleted') ||
      (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
  for (const change of ordered) {
    const source = change.change === 'deleted' ? undefined : request.sourceOf(change.path);
    const reason = refusal(change, source, request, plan.host);
    if (reason) plan.refused.push({ path: change.path, reason });
    else plan.add(change, source);
  }
  return plan;
}

interface PlannedChange extends WorkspaceChange {
  source?: LayerEntry;
}

export class AcceptPlan implements AcceptResult {
  readonly applied: WorkspaceChange[] = [];
  readonly refused: { path: string; reason: string }[] = [];
  /** What the checks learnt about the host's directories, which apply reuses. */
  readonly host: HostDirs;
  readonly #planned: PlannedChange[] = [];

  constructor(
    private readonly workspace: string,
    knownStats?: ReadonlyMap<string, Stats | undefined>,
  ) {
    this.host = new HostDirs(workspace, knownStats);
  }

  add(change: WorkspaceChange, source: LayerEntry | undefined): void {
    this.#planned.push({ ...change, ...(source ? { source } : {}) });
    this.applied.push(change);
  }

  /**
   * Applies the changes that passed the checks, one path at a time, each atomically
   * (written beside its target, then renamed over it). It never follows a symlink on the
   * host side, never writes outside the workspace, copies no device, fifo or socket, drops
   * setuid/setgid/sticky bits, and leaves the repo's control plane alone unless forced.
   *
   * Deletions come first, then directories (parents before children), serially; then the
   * files and symlinks, several at a time: each has its own target, its parent exists by
   * then, and nothing else of the accept touches it.
   *
   * `setAside`: an empty directory on the workspace's filesystem that replaced and deleted
   * entries are moved into (see SetAside), for the caller to delete afterwards. Without
   * it they are removed in place.
   */
  async apply(setAside?: string): Promise<AcceptResult> {
    const aside = new SetAside(setAside);
    const files: PlannedChange[] = [];
    for (const change of this.#planned) {
      const target = childPath(this.workspace, change.path);
      if (change.change === 'deleted') {
        aside.remove(target);
        this.host.forget(target);
      } else if (change.source!.stats.isDirectory()) applyDirectory(change, target, this.host, aside);
      else {
        this.host.makeParent(target);
        files.push(change);
      }
    }
    const temps = new TempNames();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < files.length) await applyFile(files[next++]!, this.workspace, temps, aside);
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, files.length) }, worker));
    return { applied: this.applied, refused: this.refused };
  }
}

function refusal(
  change: WorkspaceChange,
  source: LayerEntry | undefined,
  request: AcceptRequest,
  host: HostDirs,
): string | undefined {
  const path = change.path;
  if (path === '' || isAbsolute(path) || normalize(path) !== path || path.split('/').includes('..'))
    return 'path is not a plain relative path inside the workspace';
  if (isControlPlanePath(path) && !request.force)
    return 'control-plane file (executed or trusted by the host); accept with --force after review';
  const parentProblem = host.parentProblem(path);
  if (parentProblem) return parentProblem;
  if (change.change === 'deleted') return undefined;
  if (source === undefined) return 'no content for this change in the cell layers';
  const stat = source.stats;
  if (stat.isSymbolicLink()) return symlinkProblem(request.workspace, path, readlinkSync(source.path));
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

  constructor(
    private readonly workspace: string,
    private readonly knownStats?: ReadonlyMap<string, Stats | undefined>,
  ) {}

  /** Every existing ancestor of the target must be a real directory inside the workspace. */
  parentProblem(path: string): string | undefined {
    const parts = path.split('/');
    let current = this.workspace;
    for (const part of parts.slice(0, -1)) {
      current = childPath(current, part);
      let problem = this.#problems.get(current);
      if (!this.#problems.has(current)) {
        problem = directoryProblem(current, this.knownStats);
        this.#problems.set(current, problem);
      }
      if (problem === MISSING) return undefined; // created as a real directory on apply
      if (problem) return problem;
    }
    return undefined;
  }

  /** mkdir -p of a target's parent, once per directory, and not for one the checks found. */
  makeParent(target: string): void {
    const dir = dirname(target);
    if (this.#made.has(dir) || (this.#problems.has(dir) && this.#problems.get(dir) === undefined)) return;
    makeDirs(dir);
    this.#made.add(dir);
  }

  /** A directory accept removed: what was known about it and below is void. */
  forget(target: string): void {
    const under = (dir: string): boolean => dir === target || dir.startsWith(target + sep);
    for (const dir of [...this.#made]) if (under(dir)) this.#made.delete(dir);
    for (const dir of [...this.#problems.keys()]) if (under(dir)) this.#problems.delete(dir);
  }
}

const MISSING = '';

function directoryProblem(path: string, known?: ReadonlyMap<string, Stats | undefined>): string | undefined {
  let stat: Stats | undefined;
  if (known?.has(path)) stat = known.get(path);
  else {
    try {
      stat = lstatSync(path);
    } catch {
      stat = undefined;
    }
  }
  if (!stat) return MISSING;
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

function applyDirectory(change: PlannedChange, target: string, host: HostDirs, aside: SetAside): void {
  host.makeParent(target);
  const existing = lstatOrUndefined(target);
  if (existing && !existing.isDirectory()) aside.remove(target);
  if (!existing || !existing.isDirectory()) mkdirSync(target);
  chmodSync(target, change.source!.stats.mode & 0o777);
  host.forget(target); // made or replaced: a real directory now
}

async function applyFile(change: PlannedChange, workspace: string, temps: TempNames, aside: SetAside): Promise<void> {
  const target = childPath(workspace, change.path);
  const { path: source, stats } = change.source!;
  // No setuid, setgid or sticky bit survives (a link shares the layer file's mode, a copy copies it).
  const strip = (path: string): Promise<void> | undefined =>
    (stats.mode & 0o7000) !== 0 ? fs.chmod(path, stats.mode & 0o777) : undefined;
  // An added file is linked straight into place: link(2) is atomic, and fails if something is there now.
  if (change.change === 'added' && stats.isFile() && (await linkInto(source, target, stats.nlink))) {
    await strip(target);
    return;
  }
  const temp = join(dirname(target), temps.next());
  if (stats.isSymbolicLink()) await fs.symlink(await fs.readlink(source), temp);
  else {
    if (!(await linkInto(source, temp, stats.nlink))) await fs.copyFile(source, temp);
    await strip(temp);
  }
  await aside.keep(target);
  try {
    await fs.rename(temp, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    aside.remove(target); // a directory in the way: set aside with what it holds
    await fs.rename(temp, target);
  }
}

/** Names for the files accept writes beside their targets: one random part per accept. */
class TempNames {
  readonly #prefix = `.agentcell-accept-${randomBytes(6).toString('hex')}-`;
  #count = 0;
  next(): string {
    return `${this.#prefix}${this.#count++}`;
  }
}

/**
 * Hard-links a layer file that nothing else links; false where a link can't be made
 * (another filesystem, or something is at the target), and the caller copies or replaces. A link costs no data copy, and the layer
 * is dropped right after accept, so the inode ends up the workspace's alone; a forked
 * cell hard-links its layers (links > 1) and must never see the workspace's later edits.
 */
async function linkInto(source: string, target: string, links: number): Promise<boolean> {
  if (links > 1) return false;
  try {
    await fs.link(source, target);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK' || code === 'EEXIST') return false;
    throw error;
  }
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
