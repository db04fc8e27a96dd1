import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  constants,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  type BigIntStats,
  type Stats,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import * as z from 'zod/mini';
import { AgentcellError } from '../../errors.js';
import type { LayerStack } from './layer-stack.js';
import { removeTrees } from '../../_internal/remove-trees.js';
import { readOverlayXattrs, type OverlayXattrs } from './overlay-xattrs.js';
import { makeDirs } from '../../_internal/make-dirs.js';
import { cellStateFix, readStateFile, writeStateFile, type StateFileKind } from '../../_internal/state-file.js';

/**
 * The copy driver, the last resort where neither the kernel's overlayfs nor
 * fuse-overlayfs can be mounted (no overlay in a user namespace, no usable /dev/fuse):
 * a run works on a plain copy of the merged view in the cell's `merged` dir, and what it
 * changed there is then written into the upper layer in the kernel's own format
 * (whiteouts are 0/0 character devices, which Linux >= 5.8 lets any user make; opaque
 * directories carry `user.overlay.opaque`). Diff, accept, restore and fork then treat
 * the cell's layers like any other. The copy costs O(workspace) per run (reflinked
 * where the filesystem can), which is why this driver comes last and is labeled.
 *
 * Changes are found against a manifest taken right after the copy: type, inode, ctime
 * and mode of every path. ctime can't be set from user space, so a file rewritten with
 * its old size and mtime still shows.
 */

const MANIFEST = 'copy-manifest.json';

/**
 * Workspace-relative path and signature (see `signature`) of every path right after the
 * copy, as pairs: an object keyed by path can't hold a `__proto__` (JSON parsing drops
 * it) and finds prototype members for `constructor` and the like, which made a run in a
 * workspace with a directory named `__proto__` fail. The older object is still read: a
 * run left pending (agentcell killed) by the version before is captured by this one.
 */
const ManifestSchema = z.union([
  z.strictObject({ version: z.literal(2), paths: z.array(z.tuple([z.string(), z.string()])) }),
  z.record(z.string(), z.string()),
]);

/** By path, in memory. */
type Manifest = Map<string, string>;

/** While it exists a copy run's changes are only in `merged`: damaged, they can't be told, so it is an error. */
const MANIFEST_FILE: StateFileKind<typeof ManifestSchema> = {
  schema: ManifestSchema,
  what: "the copy driver's record of a run's starting point",
  fix: cellStateFix,
};

/** A masked path in the workspace: its copy is emptied, so the cell's bind hides nothing the state dir keeps. */
export interface CopyMask {
  target: string;
  kind: 'file' | 'dir';
}

/** Fills `merged` with the workspace and the cell's layers, and records the manifest. */
export async function materializeCopy(stack: LayerStack, workspace: string, masks: readonly CopyMask[]): Promise<void> {
  const merged = stack.merged;
  if (existsSync(merged)) removeTrees([merged]);
  makeDirs(merged);
  const copied = spawnSync('cp', ['-a', '--reflink=auto', '--', `${workspace}/.`, merged], { encoding: 'utf8' });
  if (copied.error || copied.status !== 0)
    throw new AgentcellError(
      'WORKSPACE_INVALID',
      `cannot copy the workspace for the copy overlay driver: ${(copied.error?.message ?? copied.stderr.trim()) || `exit ${String(copied.status)}`}`,
    );
  const layers = stack.layers.map((l) => l.dir);
  const xattrs = await readOverlayXattrs([...layers, stack.upper]);
  for (const layer of [...layers, stack.upper]) applyLayer(layer, merged, xattrs);
  for (const mask of masks) {
    const rel = relative(workspace, mask.target);
    if (rel.startsWith('..')) continue;
    const copy = join(merged, rel);
    const stat = lstatOrUndefined(copy);
    if (!stat) continue;
    if (mask.kind === 'file' && stat.isFile()) truncateSync(copy);
    else if (mask.kind === 'dir' && stat.isDirectory())
      for (const name of readdirSync(copy)) rmSync(join(copy, name), { recursive: true, force: true });
  }
  const paths: [string, string][] = [];
  walk(merged, '', (rel, stat) => paths.push([rel, signature(stat)]));
  writeStateFile(join(stack.cellDir, MANIFEST), MANIFEST_FILE, { version: 2, paths }, { mode: 0o644 });
}

/**
 * Writes what the run changed in `merged` into the (empty) upper layer, then empties
 * `merged`. Does nothing when there is no manifest (no copy run pending). A run a killed
 * agentcell left is captured the same way by the next command that opens the stack.
 */
export function captureCopy(stack: LayerStack): boolean {
  const manifestPath = join(stack.cellDir, MANIFEST);
  const found = readStateFile(manifestPath, MANIFEST_FILE);
  if (!found) return false;
  const capture = new Capture(stack, manifestOf(found));
  capture.visit('', false);
  capture.finish();
  removeTrees([stack.merged]);
  mkdirSync(stack.merged);
  unlinkSync(manifestPath);
  return true;
}

function manifestOf(found: z.infer<typeof ManifestSchema>): Manifest {
  if (found.version === 2 && Array.isArray(found.paths)) return new Map(found.paths);
  // An older manifest: its __proto__, if the copy had one, was dropped and shows as new.
  return new Map(Object.entries(found as Record<string, string>));
}

class Capture {
  /** Directories of the run's copy, visited. */
  readonly #dirs = new Set<string>();
  /** Directories whose whole content is new (replaced or added): nothing below them shows. */
  readonly #fresh = new Set<string>();
  /** Directories replaced in the run: opaque in the upper layer, everything under them new. */
  readonly #opaque: string[] = [];
  readonly #whiteouts: string[] = [];

  constructor(
    private readonly stack: LayerStack,
    private readonly manifest: Manifest,
  ) {}

  /** `fresh`: under a replaced or new directory, where nothing of the lower view shows. */
  visit(rel: string, fresh: boolean): void {
    let names: string[];
    try {
      names = readdirSync(join(this.stack.merged, rel));
    } catch {
      return; // made unreadable in the run: as with overlayfs, what is in it can't be told
    }
    this.#dirs.add(rel);
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const stat = lstatSync(join(this.stack.merged, path), { bigint: true });
      const old = fresh ? undefined : this.manifest.get(path);
      const now = signature(stat);
      if (stat.isDirectory()) {
        const replaced = old !== undefined && (kindOf(old) !== 'd' || inodeOf(old) !== inodeOf(now));
        if (old === undefined || replaced || modeOf(old) !== modeOf(now)) this.#upperDir(path);
        if (replaced) this.#opaque.push(join(this.stack.upper, path));
        if (fresh || old === undefined || replaced) this.#fresh.add(path);
        this.visit(path, this.#fresh.has(path));
      } else if (old !== now) this.#copyUp(path, stat);
    }
  }

  /** Whiteouts for what the lower view had and the run removed, then the xattrs and devices. */
  finish(): void {
    for (const path of this.manifest.keys()) {
      if (lstatOrUndefined(join(this.stack.merged, path))) continue;
      const parent = path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
      // Gone with its parent (whose own whiteout or replacement hides it), or under a new directory.
      if (!this.#dirs.has(parent) || this.#fresh.has(parent)) continue;
      if (parent !== '') this.#upperDir(parent);
      this.#whiteouts.push(join(this.stack.upper, path));
    }
    if (this.#whiteouts.length > 0)
      run('/bin/sh', [
        '-c',
        'for p; do rm -rf -- "$p" && mknod "$p" c 0 0 || exit 1; done',
        'whiteout',
        ...this.#whiteouts,
      ]);
    if (this.#opaque.length > 0) run('setfattr', ['-n', 'user.overlay.opaque', '-v', 'y', '--', ...this.#opaque]);
  }

  /** The directory in the upper layer, its missing parents made with the merged view's modes. */
  #upperDir(path: string): void {
    const parts = path.split('/');
    for (let depth = 1; depth <= parts.length; depth++) {
      const rel = parts.slice(0, depth).join('/');
      const target = join(this.stack.upper, rel);
      const mode = lstatSync(join(this.stack.merged, rel)).mode & 0o7777;
      if (!existsSync(target)) mkdirSync(target);
      if (depth === parts.length || lstatSync(target).mode !== mode) chmodSync(target, mode);
    }
  }

  #copyUp(path: string, stat: BigIntStats): void {
    const source = join(this.stack.merged, path);
    const target = join(this.stack.upper, path);
    if (path.includes('/')) this.#upperDir(dirname(path));
    copyEntry(source, target, stat);
  }
}

/** Replays one layer (kernel format) onto the copy. */
function applyLayer(layer: string, target: string, xattrs: OverlayXattrs): void {
  for (const name of listDir(layer)) {
    const from = join(layer, name);
    const to = join(target, name);
    const stat = lstatSync(from);
    const existing = lstatOrUndefined(to);
    if (stat.isCharacterDevice() && stat.rdev === 0) {
      if (existing) rmSync(to, { recursive: true, force: true });
    } else if (stat.isDirectory()) {
      const opaque = xattrs.get(from)?.get('user.overlay.opaque')?.toString('latin1') === 'y';
      if (existing && (opaque || !existing.isDirectory())) rmSync(to, { recursive: true, force: true });
      if (!existing || opaque || !existing.isDirectory()) mkdirSync(to);
      chmodSync(to, stat.mode & 0o7777);
      applyLayer(from, to, xattrs);
    } else {
      if (existing) rmSync(to, { recursive: true, force: true });
      copyEntry(from, to, stat);
    }
  }
}

/** A file or symlink copied with its mode and mtime (reflinked where the filesystem can). */
function copyEntry(from: string, to: string, stat: Stats | BigIntStats): void {
  if (stat.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
  else if (stat.isFile()) {
    copyFileSync(from, to, constants.COPYFILE_FICLONE);
    utimesSync(to, Number(stat.atimeMs) / 1000, Number(stat.mtimeMs) / 1000);
  } else run('cp', ['-a', '--', from, to]); // a fifo or socket: diff lists it, accept refuses it
}

function walk(root: string, rel: string, each: (rel: string, stat: BigIntStats) => void): void {
  for (const name of listDir(join(root, rel))) {
    const path = rel === '' ? name : `${rel}/${name}`;
    const stat = lstatSync(join(root, path), { bigint: true });
    each(path, stat);
    if (stat.isDirectory()) walk(root, path, each);
  }
}

/** `kind:inode:ctime:mode`: any write, chmod, rename or replacement changes it. */
function signature(stat: BigIntStats): string {
  const kind = stat.isDirectory() ? 'd' : stat.isSymbolicLink() ? 'l' : stat.isFile() ? 'f' : 'o';
  return `${kind}:${stat.ino}:${stat.ctimeNs}:${stat.mode & 0o7777n}`;
}

const kindOf = (sig: string): string => sig.split(':')[0]!;
const inodeOf = (sig: string): string => sig.split(':')[1]!;
const modeOf = (sig: string): string => sig.split(':')[3]!;

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error || result.status !== 0)
    throw new AgentcellError(
      'INTERNAL',
      `copy overlay driver: ${command} failed: ${(result.error?.message ?? result.stderr.trim()) || `exit ${String(result.status)}`}`,
    );
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return []; // unreadable (mode 000) or gone: as overlayfs, the cell couldn't list it either
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}
