import type { Stats } from 'node:fs';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { AgentcellError } from '../../errors.js';
import { childPath } from '../child-path.js';
import type { LayerStack } from './layer-stack.js';
import type { OverlayXattrs, XattrReader } from './overlay-xattrs.js';
import { readOverlayXattrs } from './overlay-xattrs.js';

export type ChangeType = 'added' | 'modified' | 'deleted';
export type EntryKind = 'file' | 'dir' | 'symlink' | 'other';

export interface LayerChange {
  /** Relative to the workspace, `/`-separated. */
  path: string;
  change: ChangeType;
  /** The entry's kind after the change; for a deletion, what the workspace has. */
  kind: EntryKind;
}

export interface DiffOptions {
  xattrReader?: XattrReader;
  /**
   * Same-size regular files up to this many bytes are compared byte for byte, so a
   * file copied up but left identical (touch, a rewrite with the same content) is
   * not a change. Larger ones count as modified without reading them. Default 16 MiB.
   */
  compareLimit?: number;
  /**
   * Filled with the layer entry that holds each added or modified path's new content
   * (the topmost one) and its lstat, so accept needn't look them up again.
   */
  sources?: Map<string, LayerEntry>;
  /**
   * Filled with the layer that decides each change: 0 for the upper layer, then 1 for the
   * newest frozen layer, and so on (restore counts what the layers it drops changed).
   */
  deciders?: Map<string, number>;
  /**
   * Filled with every lstat the diff made (undefined: nothing there), layer and workspace
   * paths alike, so accept's checks of the host's directories reuse them.
   */
  stats?: Map<string, Stats | undefined>;
}

/** A path's entry in the topmost layer that has it. */
export interface LayerEntry {
  path: string;
  stats: Stats;
}

const DEFAULT_COMPARE_LIMIT = 16 * 1024 * 1024;

/**
 * What the cell's layers change in the workspace: the merged view (upper layer, then
 * frozen layers newest first, then the workspace) compared with the workspace, reading
 * only the layers and the workspace entries they touch.
 *
 * Overlay semantics, top layer first: a whiteout (character device 0/0) hides the name
 * in every layer below it and in the workspace; an opaque directory
 * (`user.overlay.opaque=y`) hides everything below it under that name, so what the
 * workspace had there and is not re-created is deleted. Every path is listed: a new
 * directory and each entry in it, a deleted directory and each entry it held. A
 * directory is modified only when its permissions changed. Sorted by path.
 */
export async function diffLayers(
  stack: LayerStack,
  workspace: string,
  options: DiffOptions = {},
): Promise<LayerChange[]> {
  const roots = [stack.upper, ...stack.layers.map((l) => l.dir).reverse()];
  // The xattr reader is a process of its own: the layers are read meanwhile.
  const pending = readOverlayXattrs(roots, options.xattrReader);
  const entries = new EntryCache(options.stats);
  entries.prefetch(roots, workspace);
  const xattrs = await pending;
  refuseUnsupported(xattrs);
  const walk = new LayerWalk(
    entries,
    workspace,
    xattrs,
    options.compareLimit ?? DEFAULT_COMPARE_LIMIT,
    stack.driver === 'fuse-overlayfs',
    options.sources,
    options.deciders,
  );
  walk.visitDir(
    '',
    roots.map((dir, level) => ({ dir, level })),
    undefined,
    true,
  );
  return walk.changes.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Layers written by overlayfs with `userxattr` never hold these; a layer that does came from elsewhere. */
function refuseUnsupported(xattrs: OverlayXattrs): void {
  for (const [path, names] of xattrs) {
    for (const name of ['user.overlay.redirect', 'user.overlay.metacopy', 'user.overlay.whiteout']) {
      if (names.has(name))
        throw new AgentcellError('INTERNAL', `${path} carries ${name}, which agentcell's layers never use`);
    }
  }
}

/** A directory in one of the layers, with the layer's level (0 = upper). */
interface LayerDir {
  dir: string;
  level: number;
}

/**
 * lstat and readdir results for the layers and the workspace paths they name, read in
 * one pass ahead of the walk (while the xattr reader runs); anything else is read live.
 */
class EntryCache {
  readonly #stats: Map<string, Stats | undefined>;
  readonly #lists = new Map<string, string[]>();

  constructor(stats = new Map<string, Stats | undefined>()) {
    this.#stats = stats;
  }

  prefetch(roots: readonly string[], workspace: string): void {
    // `wsDir`: the workspace has a real directory at `rel` (never looked through a symlink).
    const visit = (root: string, rel: string, wsDir: boolean): void => {
      for (const name of this.list(rel === '' ? root : childPath(root, rel))) {
        const path = rel === '' ? name : `${rel}/${name}`;
        const stat = this.lstat(childPath(root, path));
        const ws = wsDir ? this.lstat(childPath(workspace, path)) : undefined;
        if (stat?.isDirectory()) visit(root, path, ws?.isDirectory() ?? false);
      }
    };
    for (const root of roots) visit(root, '', true);
  }

  lstat(path: string): Stats | undefined {
    if (this.#stats.has(path)) return this.#stats.get(path);
    const stat = lstatOrUndefined(path);
    this.#stats.set(path, stat);
    return stat;
  }

  list(dir: string): string[] {
    let names = this.#lists.get(dir);
    if (names === undefined) {
      names = listDir(dir);
      this.#lists.set(dir, names);
    }
    return names;
  }
}

class LayerWalk {
  readonly changes: LayerChange[] = [];

  constructor(
    private readonly entries: EntryCache,
    private readonly workspace: string,
    private readonly xattrs: OverlayXattrs,
    private readonly compareLimit: number,
    /** fuse-overlayfs layers: `.wh.*` entries are its markers (it refuses such names to the cell). */
    private readonly fuse: boolean,
    private readonly sources: Map<string, LayerEntry> | undefined,
    private readonly deciders: Map<string, number> | undefined,
  ) {}

  /**
   * `dirs`: this directory in each layer that contributes to it, top first.
   * `hiddenBy`: the level of the layer that hides the workspace's directory here
   * (an opaque directory, or a non-directory below the top), undefined when it shows through.
   * `wsIsDir`: the workspace has a directory here (shown or not).
   */
  visitDir(rel: string, dirs: LayerDir[], hiddenBy: number | undefined, wsIsDir: boolean): void {
    const names = new Set<string>();
    for (const { dir } of dirs)
      for (const name of this.entries.list(dir)) if (!this.fuse || !name.startsWith('.wh.')) names.add(name);
    for (const name of names) this.visitName(rel, name, dirs, hiddenBy, wsIsDir);
    if (wsIsDir && hiddenBy !== undefined) {
      // The workspace's directory is hidden: what only it has is gone.
      for (const name of this.entries.list(childPath(this.workspace, rel))) {
        if (names.has(name)) continue;
        const path = joinRel(rel, name);
        const ws = this.entries.lstat(childPath(this.workspace, path));
        if (ws) this.deleted(path, ws, hiddenBy);
      }
    }
  }

  private visitName(rel: string, name: string, dirs: LayerDir[], hiddenBy: number | undefined, wsIsDir: boolean): void {
    const path = joinRel(rel, name);
    let topIndex = -1;
    let top: Stats | undefined;
    for (let i = 0; i < dirs.length && !top; i++) {
      top = this.entries.lstat(childPath(dirs[i]!.dir, name));
      topIndex = i;
    }
    if (!top) return; // listed but gone meanwhile
    const level = dirs[topIndex]!.level;
    const ws = wsIsDir ? this.entries.lstat(childPath(this.workspace, path)) : undefined;

    if (isWhiteout(top)) {
      if (ws) this.deleted(path, ws, level);
      return;
    }
    if (top.isDirectory()) {
      const childDirs = [{ dir: childPath(dirs[topIndex]!.dir, name), level }];
      let hiddenHere = this.isOpaque(childDirs[0]!.dir) ? level : undefined;
      let i = topIndex + 1;
      for (; i < dirs.length && hiddenHere === undefined; i++) {
        const below = { dir: childPath(dirs[i]!.dir, name), level: dirs[i]!.level };
        const entry = this.entries.lstat(below.dir);
        if (!entry) continue;
        if (!entry.isDirectory())
          hiddenHere = below.level; // a whiteout or a non-directory ends the merge
        else {
          childDirs.push(below);
          if (this.isOpaque(below.dir)) hiddenHere = below.level;
        }
      }
      if (hiddenHere !== undefined) hiddenHere = this.deepestHider(name, dirs, i, hiddenHere);
      const wsDir = ws?.isDirectory() ?? false;
      const source = { path: childDirs[0]!.dir, stats: top };
      if (!ws) this.record(path, 'added', 'dir', level, source);
      else if (!wsDir) this.record(path, 'modified', 'dir', level, source);
      else if (permissions(ws) !== permissions(top)) this.record(path, 'modified', 'dir', level, source);
      this.visitDir(path, childDirs, deepest(hiddenBy, hiddenHere), wsDir);
      return;
    }
    const kind = kindOf(top);
    const source = { path: childPath(dirs[topIndex]!.dir, name), stats: top };
    if (!ws) this.record(path, 'added', kind, level, source);
    else if (ws.isDirectory()) {
      this.record(path, 'modified', kind, level, source);
      this.deletedContents(path, this.deepestHider(name, dirs, topIndex + 1, level));
    } else if (!this.same(source.path, top, childPath(this.workspace, path), ws))
      this.record(path, 'modified', kind, level, source);
  }

  /** The workspace entry at `path` (and everything under it) is gone. */
  private deleted(path: string, ws: Stats, level: number): void {
    this.record(path, 'deleted', kindOf(ws), level);
    if (ws.isDirectory()) this.deletedContents(path, level);
  }

  private deletedContents(path: string, level: number): void {
    for (const name of this.entries.list(childPath(this.workspace, path))) {
      const child = joinRel(path, name);
      const entry = this.entries.lstat(childPath(this.workspace, child));
      if (entry) this.deleted(child, entry, level);
    }
  }

  private record(path: string, change: ChangeType, kind: EntryKind, level: number, source?: LayerEntry): void {
    this.changes.push({ path, change, kind });
    this.deciders?.set(path, level);
    if (source) this.sources?.set(path, source);
  }

  /**
   * The level that decides that the workspace's directory `name` is hidden, given a hider
   * at `level`: the deepest of it and any below (from `dirs[from]`) that would hide it too
   * once the layers above were dropped (a whiteout, a non-directory, an opaque directory).
   */
  private deepestHider(name: string, dirs: LayerDir[], from: number, level: number): number {
    let deepestLevel = level;
    for (let i = from; i < dirs.length; i++) {
      const below = childPath(dirs[i]!.dir, name);
      const entry = this.entries.lstat(below);
      if (entry && (!entry.isDirectory() || this.isOpaque(below))) deepestLevel = dirs[i]!.level;
    }
    return deepestLevel;
  }

  private isOpaque(dir: string): boolean {
    const xattrs = this.xattrs.get(dir);
    if (xattrs?.get('user.overlay.opaque')?.toString('latin1') === 'y') return true;
    if (!this.fuse) return false;
    return (
      xattrs?.get('user.fuseoverlayfs.opaque')?.toString('latin1') === 'y' ||
      this.entries.lstat(childPath(dir, '.wh..wh..opq')) !== undefined
    );
  }

  /** Whether a layer entry leaves the workspace entry as it was (content and permissions). */
  private same(layerPath: string, layer: Stats, wsPath: string, ws: Stats): boolean {
    const kind = kindOf(layer);
    if (kind !== kindOf(ws)) return false;
    if (kind === 'symlink') return readlinkSync(layerPath) === readlinkSync(wsPath);
    if (permissions(layer) !== permissions(ws)) return false;
    if (kind === 'other') return layer.rdev === ws.rdev && (layer.mode & 0o170000) === (ws.mode & 0o170000);
    if (layer.size !== ws.size) return false;
    if (layer.size > this.compareLimit) return false;
    return sameBytes(layerPath, wsPath);
  }
}

/** Of two hiding layers, the deeper one: what it hides stays hidden until it is dropped too. */
function deepest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}

/** Whether two files hold the same bytes (false when one is unreadable, EACCES; other errors throw). */
export function sameBytes(a: string, b: string): boolean {
  let fa: number | undefined;
  let fb: number | undefined;
  try {
    fa = openSync(a, 'r');
    fb = openSync(b, 'r');
    const bufA = Buffer.allocUnsafe(64 * 1024);
    const bufB = Buffer.allocUnsafe(64 * 1024);
    for (;;) {
      const na = readSync(fa, bufA, 0, bufA.length, null);
      const nb = readSync(fb, bufB, 0, bufB.length, null);
      if (na !== nb) return false;
      if (na === 0) return true;
      if (!bufA.subarray(0, na).equals(bufB.subarray(0, nb))) return false;
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EACCES') return false; // unreadable: count it as changed
    throw error;
  } finally {
    if (fa !== undefined) closeSync(fa);
    if (fb !== undefined) closeSync(fb);
  }
}

function isWhiteout(stats: Stats): boolean {
  return stats.isCharacterDevice() && stats.rdev === 0;
}

function kindOf(stats: Stats): EntryKind {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  return 'other';
}

function permissions(stats: Stats): number {
  return stats.mode & 0o7777;
}

function joinRel(rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    // No exception for the common miss (an added path): building one costs more than the call.
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
}

/** A directory's names; none when it is missing or unreadable (the agent may chmod 000 a directory). */
function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES') return [];
    throw error;
  }
}

/** How many paths each kind of change touches, for receipts. */
export function countChanges(changes: readonly { change: ChangeType }[]): Record<ChangeType, number> {
  const counts = { added: 0, modified: 0, deleted: 0 };
  for (const c of changes) counts[c.change]++;
  return counts;
}
