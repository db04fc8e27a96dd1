import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  constants,
  promises as fs,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  type Stats,
} from 'node:fs';
import { isAbsolute, normalize } from 'node:path';
import { AgentcellError } from '../errors.js';
import { childPath } from './child-path.js';
import { readControlPlane, type ControlPlane } from './control-plane.js';
import { FinalTree, type FinalEntry } from './final-tree-links.js';
import type { LayerEntry } from './overlay/layer-diff.js';
import { PinnedDirs } from './pinned-dirs.js';
import { SetAside } from './set-aside.js';

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
  /** Apply control-plane changes and conflicts too (unsafe ones never). */
  force: boolean;
  /**
   * lstat results for host paths, from the diff that found the changes moments before,
   * under the same cell lock (undefined: nothing there). Paths not in it are read now.
   */
  knownStats?: ReadonlyMap<string, Stats | undefined>;
  /** The workspace's control plane (default: read now, with the host's git). */
  controlPlane?: ControlPlane;
  /** Paths the host changed since the run that changed them, with why (see accept-baseline). */
  conflicts?: ReadonlyMap<string, string>;
}

/**
 * Why a change is flagged. `unsafe`: never applied (it would escape the workspace or is
 * a device); `refused`: the control plane, applied only with --force; `conflict`: the
 * host changed the path since the run, applied only with --force; `review`: applied, but
 * something on the host executes it, so a human should read it first.
 */
export type FlagTier = 'unsafe' | 'refused' | 'conflict' | 'review';

export interface Flag {
  tier: FlagTier;
  reason: string;
}

export interface FlaggedPath extends Flag {
  path: string;
}

export interface AcceptResult {
  applied: WorkspaceChange[];
  /** Not applied. */
  refused: FlaggedPath[];
  /** Applied, and flagged for review (or applied over a refusal by --force). */
  flagged: FlaggedPath[];
}

export interface ApplyResult extends AcceptResult {
  /** Paths the host changed under accept as it applied them (a directory swapped for a symlink): not written. */
  failed: { path: string; reason: string }[];
}

/** Files applied at once: renames in different directories overlap in the kernel (about 2× on ext4). */
const CONCURRENCY = 8;

/**
 * Checks a cell's changes against the host workspace, changing nothing: what `apply`
 * would apply, and what it refuses or flags and why (`--dry-run`, and `diff`'s flags).
 */
export function planAccept(request: AcceptRequest): AcceptPlan {
  const plan = new AcceptPlan(request.workspace, request.knownStats);
  const plane = request.controlPlane ?? readControlPlane(request.workspace);
  // Deletions of a directory come before additions inside its replacement; then by path,
  // in code-unit order, which puts a directory before what is in it (and, unlike
  // localeCompare, costs nothing: that sort was 20 ms of a cold accept of 1,000 files).
  const ordered = [...request.changes].sort(
    (a, b) =>
      Number(b.change === 'deleted') - Number(a.change === 'deleted') ||
      (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
  const refusedDirs = new Map<string, FlagTier>();
  const candidates: PlannedChange[] = [];
  for (const change of ordered) {
    const source = change.change === 'deleted' ? undefined : request.sourceOf(change.path);
    const own = check(change, source, request, plan.host, plane);
    const flag = own && own.tier !== 'review' ? own : (inRefusedDir(change.path, refusedDirs) ?? own);
    if (flag && (flag.tier === 'unsafe' || (flag.tier !== 'review' && !request.force))) {
      plan.refused.push({ path: change.path, ...flag });
      if (source?.stats.isDirectory() && change.change === 'added') refusedDirs.set(change.path, flag.tier);
      continue;
    }
    if (flag) plan.flagged.push({ path: change.path, ...flag });
    candidates.push({ ...change, ...(source ? { source } : {}) });
  }
  for (const change of judgeSymlinks(request.workspace, candidates, plane, request.force, plan)) plan.add(change);
  return plan;
}

interface PlannedChange extends WorkspaceChange {
  source?: LayerEntry;
}

export class AcceptPlan implements AcceptResult {
  readonly applied: WorkspaceChange[] = [];
  readonly refused: FlaggedPath[] = [];
  readonly flagged: FlaggedPath[] = [];
  /** What the checks learnt about the host's directories. */
  readonly host: HostDirs;
  readonly #planned: PlannedChange[] = [];

  constructor(
    private readonly workspace: string,
    knownStats?: ReadonlyMap<string, Stats | undefined>,
  ) {
    this.host = new HostDirs(workspace, knownStats);
  }

  add(change: PlannedChange): void {
    this.#planned.push(change);
    // The change as the caller gave it (a diff's has its kind), without the layer entry.
    const applied: WorkspaceChange & { source?: LayerEntry } = { ...change };
    delete applied.source;
    this.applied.push(applied);
  }

  /** The directories apply writes temporary files into (for cleaning up after a killed accept). */
  tempDirs(): string[] {
    const dirs = new Set<string>();
    for (const c of this.#planned) if (c.source && !c.source.stats.isDirectory()) dirs.add(parentOf(c.path));
    return [...dirs];
  }

  /**
   * Applies the changes that passed the checks, one path at a time, each atomically
   * (written beside its target, then renamed over it). Every write goes through a
   * directory descriptor opened no-follow from the workspace root (PinnedDirs), so it
   * never follows a symlink on the host side, even one swapped in while accept runs, and
   * never writes outside the workspace. It copies no device, fifo or socket and drops
   * setuid/setgid/sticky bits. A path whose directory the host changed under it is
   * reported in `failed`, not written; the rest is applied.
   *
   * Deletions come first, then directories (parents before children), serially; then the
   * files and symlinks, several at a time: each has its own target, its parent exists by
   * then, and nothing else of the accept touches it.
   *
   * `setAside`: an empty directory on the workspace's filesystem that replaced and deleted
   * entries are moved into (see SetAside), for the caller to delete afterwards. Without
   * it they are removed in place. `tempPrefix`: the name prefix of the temporary files.
   */
  async apply(options: { setAside?: string; tempPrefix?: string } = {}): Promise<ApplyResult> {
    const dirs = new PinnedDirs(this.workspace);
    const aside = new SetAside(options.setAside, dirs);
    const failed: ApplyResult['failed'] = [];
    const attempt = async (change: PlannedChange, step: () => void | Promise<void>): Promise<void> => {
      try {
        await step();
      } catch (error) {
        const reason = hostChangeReason(error);
        if (reason === undefined) throw error;
        failed.push({ path: change.path, reason });
      }
    };
    try {
      const files: PlannedChange[] = [];
      for (const change of this.#planned) {
        await attempt(change, () => {
          if (change.change === 'deleted') {
            aside.remove(change.path);
            dirs.forget(change.path);
          } else if (change.source!.stats.isDirectory()) applyDirectory(change, dirs, aside);
          else {
            dirs.dir(parentOf(change.path), true);
            files.push(change);
          }
        });
      }
      const temps = new TempNames(options.tempPrefix);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < files.length) {
          const change = files[next++]!;
          await attempt(change, () => applyFile(change, dirs, temps, aside));
        }
      };
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, files.length) }, worker));
    } finally {
      dirs.close();
    }
    const failedPaths = new Set(failed.map((f) => f.path));
    return {
      applied: this.applied.filter((c) => !failedPaths.has(c.path)),
      refused: this.refused,
      flagged: this.flagged,
      failed,
    };
  }
}

/** A new prefix for one accept's temporary files: `.agentcell-accept-<random>-`. */
export function newTempPrefix(): string {
  return `${TEMP_MARK}${randomBytes(6).toString('hex')}-`;
}

export const TEMP_MARK = '.agentcell-accept-';

function check(
  change: WorkspaceChange,
  source: LayerEntry | undefined,
  request: AcceptRequest,
  host: HostDirs,
  plane: ControlPlane,
): Flag | undefined {
  const path = change.path;
  const unsafe = (reason: string): Flag => ({ tier: 'unsafe', reason });
  if (path === '' || isAbsolute(path) || normalize(path) !== path || path.split('/').includes('..'))
    return unsafe('path is not a plain relative path inside the workspace');
  const parentProblem = host.parentProblem(path);
  if (parentProblem) return unsafe(parentProblem);
  if (change.change !== 'deleted') {
    if (source === undefined) return unsafe('no content for this change in the cell layers');
    const stat = source.stats;
    if (!stat.isFile() && !stat.isDirectory() && !stat.isSymbolicLink())
      return unsafe(`a ${fileType(stat)} cannot be accepted`);
  }
  const control = plane.classify(path);
  if (control?.tier === 'refused') return control;
  const conflict = request.conflicts?.get(path);
  if (conflict) return { tier: 'conflict', reason: `${conflict}; accept --force to overwrite it` };
  if (
    control &&
    !(change.change !== 'deleted' && isPackageJson(path) && !scriptsChanged(request.workspace, path, source!))
  )
    return change.change === 'deleted' ? undefined : control;
  return undefined;
}

/** A change inside a directory accept refuses is refused with it. */
function inRefusedDir(path: string, refusedDirs: ReadonlyMap<string, FlagTier>): Flag | undefined {
  for (let slash = path.indexOf('/'); slash > 0; slash = path.indexOf('/', slash + 1)) {
    const tier = refusedDirs.get(path.slice(0, slash));
    if (tier) return { tier, reason: `inside ${path.slice(0, slash)}, which accept refuses` };
  }
  return undefined;
}

/**
 * Judges every symlink in the change against the workspace as it will be once the whole
 * change is applied (other links in it, and on the host, included), not lexically.
 * Refusing one link can change where another leads, so it repeats until nothing more is
 * refused. Returns the changes that remain.
 */
function judgeSymlinks(
  workspace: string,
  candidates: PlannedChange[],
  plane: ControlPlane,
  force: boolean,
  plan: AcceptPlan,
): PlannedChange[] {
  const links = candidates.filter((c) => c.source?.stats.isSymbolicLink());
  if (links.length === 0) return candidates;
  const entries = new Map<string, FinalEntry>();
  for (const c of candidates) entries.set(c.path, finalEntry(c));
  const tree = new FinalTree(workspace, entries);
  const refused = new Set<string>();
  for (let again = true; again;) {
    again = false;
    for (const link of links) {
      if (refused.has(link.path)) continue;
      const where = tree.resolve(link.path);
      let flag: Flag | undefined;
      if ('problem' in where) flag = { tier: 'unsafe', reason: where.problem };
      else if (plane.classify(where.resolved)?.tier === 'refused')
        flag = { tier: 'refused', reason: `symlink into the control plane (${where.resolved || '.'})` };
      if (!flag) continue;
      if (flag.tier === 'refused' && force) {
        if (!plan.flagged.some((f) => f.path === link.path)) plan.flagged.push({ path: link.path, ...flag });
        continue;
      }
      refused.add(link.path);
      plan.refused.push({ path: link.path, ...flag });
      const index = plan.flagged.findIndex((f) => f.path === link.path);
      if (index >= 0) plan.flagged.splice(index, 1);
      tree.drop(link.path);
      again = true;
    }
  }
  return candidates.filter((c) => !refused.has(c.path));
}

function finalEntry(change: PlannedChange): FinalEntry {
  if (change.change === 'deleted' || !change.source) return { kind: 'absent' };
  const stats = change.source.stats;
  if (stats.isSymbolicLink()) return { kind: 'symlink', target: readlinkSync(change.source.path) };
  return { kind: stats.isDirectory() ? 'dir' : 'other' };
}

function isPackageJson(path: string): boolean {
  return path === 'package.json' || path.endsWith('/package.json');
}

/** Whether a package.json change touches what npm runs (its scripts); unreadable counts as changed. */
function scriptsChanged(workspace: string, path: string, source: LayerEntry): boolean {
  const scripts = (file: string): string | undefined => {
    try {
      const value = JSON.parse(readFileSync(file, 'utf8')) as { scripts?: unknown };
      return JSON.stringify(value.scripts ?? {});
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'ENOENT' ? JSON.stringify({}) : undefined;
    }
  };
  if (!source.stats.isFile()) return true;
  const before = scripts(childPath(workspace, path));
  const after = scripts(source.path);
  return before === undefined || after === undefined || before !== after;
}

/** The reason for a path whose directory the host changed under accept; undefined for any other error. */
function hostChangeReason(error: unknown): string | undefined {
  if (error instanceof AgentcellError && error.code === 'ACCEPT_INTERRUPTED') return error.message;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'EEXIST' || code === 'ENOTEMPTY')
    return `the host changed it while accept ran (${code})`;
  return undefined;
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

/**
 * The host side of the workspace's directories, checked once each per accept: a
 * thousand files in forty directories cost forty checks, not three thousand lstats.
 * What accept itself does to a directory (deleting it, creating it) keeps the answers
 * true: it only ever makes real directories.
 */
class HostDirs {
  readonly #problems = new Map<string, string | undefined>();

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

function applyDirectory(change: PlannedChange, dirs: PinnedDirs, aside: SetAside): void {
  const at = dirs.at(change.path, true);
  const existing = lstatSync(at, { throwIfNoEntry: false });
  if (existing && !existing.isDirectory()) aside.remove(change.path);
  if (!existing || !existing.isDirectory()) mkdirSync(at);
  dirs.forget(change.path); // made or replaced: a descriptor opened before is void
  chmodSync(`/proc/self/fd/${dirs.dir(change.path)}`, change.source!.stats.mode & 0o777);
}

async function applyFile(change: PlannedChange, dirs: PinnedDirs, temps: TempNames, aside: SetAside): Promise<void> {
  const target = dirs.at(change.path);
  const { path: source, stats } = change.source!;
  // No setuid, setgid or sticky bit survives: such a file goes through a temporary file that is chmodded first.
  const special = (stats.mode & 0o7000) !== 0;
  // An added file is linked straight into place: link(2) is atomic, and fails if something is there now.
  if (change.change === 'added' && stats.isFile() && !special && (await linkInto(source, target, stats.nlink))) return;
  const temp = `${target.slice(0, target.lastIndexOf('/'))}/${temps.next()}`;
  if (stats.isSymbolicLink()) await fs.symlink(await fs.readlink(source), temp);
  else {
    if (!(await linkInto(source, temp, special ? 2 : stats.nlink)))
      await fs.copyFile(source, temp, constants.COPYFILE_EXCL);
    if (special) await fs.chmod(temp, stats.mode & 0o777);
  }
  await aside.keep(target);
  try {
    await fs.rename(temp, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'ENOTEMPTY' && code !== 'EEXIST') {
      await fs.unlink(temp).catch(() => undefined);
      throw error;
    }
    aside.remove(change.path); // a directory in the way: set aside with what it holds
    await fs.rename(temp, target);
  }
}

/** Names for the files accept writes beside their targets: one random part per accept. */
class TempNames {
  #count = 0;
  constructor(readonly prefix = newTempPrefix()) {}
  next(): string {
    return `${this.prefix}${this.#count++}`;
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

function fileType(stat: Stats): string {
  if (stat.isFIFO()) return 'fifo';
  if (stat.isSocket()) return 'socket';
  if (stat.isCharacterDevice()) return 'character device';
  if (stat.isBlockDevice()) return 'block device';
  return 'special file';
}
