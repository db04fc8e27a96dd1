import { lstatSync, readdirSync, realpathSync, statSync, type Dirent } from 'node:fs';
import { join, relative, sep } from 'node:path';
import * as z from 'zod/mini';
import { readJsonCache } from '../_internal/state-file.js';
import { indexStamp, trackedPaths, workspaceRepository } from './git-index.js';
import { secretMatcher, type GlobSet } from './secret-patterns.js';

export { BUILT_IN_HIDE } from './secret-patterns.js';

export interface SecretScanOptions {
  hide: readonly string[];
  expose: readonly string[];
  /** Directory names not descended into. */
  skip: readonly string[];
  /** Workspace-relative paths neither walked nor reported: the caller masks them (agentcell's own dirs). */
  prune?: readonly string[];
  /** The time of the scan (ms), which decides what changed too recently to cache; tests pass a later one. */
  now?: number;
}

export interface MaskedPath {
  /** Absolute host path of the file or directory to mask (a symlink's in-workspace target). */
  path: string;
  /** Relative to the workspace, as the user named it. */
  relative: string;
  kind: 'file' | 'dir';
}

/** A directory entry the patterns mask; a symlink's target is resolved at each scan. */
const MaskedEntrySchema = z.strictObject({ name: z.string(), kind: z.enum(['file', 'dir', 'link']) });
type MaskedEntry = z.infer<typeof MaskedEntrySchema>;

/** The secret-named paths of one version of a repository's index. */
const ScannedIndexSchema = z.strictObject({ stamp: z.string(), secrets: z.array(z.string()) });
type ScannedIndex = z.infer<typeof ScannedIndexSchema>;

/**
 * What the scan remembers between runs, so that a directory whose entries did not change
 * is not read again: a scan of a large repo costs one lstat per directory, no readdir.
 *
 * A directory is reused only while its `stamp` (device, inode, mtime and ctime) is what
 * it was when it was read. Adding, removing or renaming an entry changes the directory's
 * mtime and ctime; `touch -d` or `cp -p` can put an mtime back but the ctime moves to the
 * present whatever is done to the inode (only a root that sets the clock back can repeat
 * one); a directory moved or copied in its place has another inode. And a directory
 * changed within RACY_MS of the scan is read again next time: a later change in the
 * same timestamp tick would leave its stamp as it was.
 *
 * Lists, never objects keyed by a path: a JSON key `__proto__` (a directory can be
 * named that) does not survive parsing into an object.
 */
const SecretScanCacheSchema = z.strictObject({
  /** The workspace and the patterns the cache was made with. */
  key: z.string(),
  /**
   * Every directory scanned, in the walk's order: `/` and its workspace-relative path, its
   * stamp (empty: read it again), then the subdirectories to descend into; all fields
   * separated by NUL, which no name can hold. A field that starts with `/` starts the next
   * directory (no name or stamp does). One string: the cache of a 100,000-file repo is
   * read, and checked against this schema, at every run.
   */
  dirs: z.string(),
  /** The masked entries, each with its directory's relative path. */
  masked: z.array(z.strictObject({ dir: z.string(), ...MaskedEntrySchema.shape })),
  /** Directories that hold a `.git`: repositories whose index is checked for secrets. */
  repos: z.array(z.string()),
  /** Each by its git dir, workspace-relative. */
  indexes: z.array(z.strictObject({ gitDir: z.string(), ...ScannedIndexSchema.shape })),
});
export type SecretScanCache = z.infer<typeof SecretScanCacheSchema>;

/**
 * A directory changed this recently (ms) is not trusted to show a later change in its
 * stamp: covers the coarsest timestamps a Linux filesystem keeps (FAT's 2 s) and the
 * kernel's timestamp tick.
 */
export const RACY_MS = 2_500;

/** The cache a scan saved (`<state>/scan-cache/…`); missing or damaged, the scan starts afresh. */
export function readScanCache(path: string): SecretScanCache | undefined {
  return readJsonCache(path, SecretScanCacheSchema);
}

export interface SecretScan {
  masked: MaskedPath[];
  /**
   * Paths the scan would mask that git tracks or has staged, workspace-relative: masking
   * the file does not hide them, their content is in `.git/objects`, which git needs.
   */
  tracked: string[];
  /** Repositories whose index could not be listed, each with the reason. */
  unchecked: string[];
  cache: SecretScanCache;
  /** Whether the cache differs from the one passed in (worth writing back). */
  changed: boolean;
}

/** What a scan found in the directories, walked or taken from the cache as saved. */
interface FoundDirs {
  /** Directories that hold a `.git`, in the walk's order. */
  repos: readonly string[];
  /** The masked entries, each with its directory, in the walk's order. */
  masked: SecretScanCache['masked'];
  /** Every directory, for a cache to save (decoded from the saved one only when needed). */
  dirs: () => Map<string, ScannedDir>;
  /** Whether the directories differ from the cache's. */
  changed: boolean;
}

/** One directory as the scan read it. */
interface ScannedDir {
  /** Empty when it must be read again next time. */
  stamp: string;
  subdirs: string[];
  masked: MaskedEntry[];
  repo: boolean;
}

/**
 * Finds the workspace entries to mask (see secret-patterns.ts for how patterns match).
 * A masked directory is not descended into. A matching symlink is resolved at every scan
 * (what it points to can change without its directory changing): its target is masked
 * if it is inside the workspace, and ignored otherwise (outside targets are not in the
 * cell unless a mount puts them there). Then, for each repository whose git dir is in
 * the workspace, which of the paths its index holds the patterns would mask.
 */
export function scanSecrets(workspace: string, options: SecretScanOptions, previous?: SecretScanCache): SecretScan {
  const matcher = secretMatcher(options.hide, options.expose);
  const realWorkspace = realpathSync(workspace);
  const key = JSON.stringify([realWorkspace, options.hide, options.expose, options.skip, options.prune ?? []]);
  const usable = previous?.key === key ? previous : undefined;
  // Directories whose stamp is at or after this are read again next time.
  const settledBefore = (options.now ?? Date.now()) - RACY_MS;
  // The common case, nothing changed: the saved stamps are checked as saved, nothing is
  // decoded (at 100,000 files, decoding the cache cost a fresh process ~15 ms).
  const found: FoundDirs =
    usable && stampsHold(workspace, usable.dirs, settledBefore)
      ? { repos: usable.repos, masked: usable.masked, dirs: () => cachedDirs(usable), changed: false }
      : walkWorkspace(workspace, matcher, options, usable, settledBefore);
  const index = scanIndexes(realWorkspace, found.repos, matcher, usable && cachedIndexes(usable), settledBefore);
  const changed = found.changed || index.changed;
  const masked: MaskedPath[] = [];
  for (const { dir, ...entry } of found.masked) {
    const path = maskedPath(join(workspace, dir), dir ? `${dir}/${entry.name}` : entry.name, entry, realWorkspace);
    if (path) masked.push(path);
  }
  return {
    masked,
    tracked: index.tracked,
    unchecked: index.unchecked,
    // Unchanged, it would be the same as the one passed in.
    cache: changed || !previous ? toCache(key, found.dirs(), index.indexes) : previous,
    changed,
  };
}

/**
 * Walks the workspace, reading each directory whose stamp is not the one in the cache
 * (every one, without a cache); `changed` when what it found differs from the cache.
 */
function walkWorkspace(
  workspace: string,
  matcher: GlobSet,
  options: SecretScanOptions,
  usable: SecretScanCache | undefined,
  settledBefore: number,
): FoundDirs {
  const skip = new Set(options.skip);
  const prune = new Set(options.prune);
  const reusable = usable ? cachedDirs(usable) : new Map<string, ScannedDir>();
  const dirs = new Map<string, ScannedDir>();
  let changed = usable === undefined;

  const visit = (dir: string, rel: string): void => {
    const stamp = dirStamp(dir, rel, settledBefore);
    if (stamp === undefined) return; // gone or replaced meanwhile (its parent is read again next time)
    const cached = reusable.get(rel);
    let scanned: ScannedDir;
    if (cached !== undefined && stamp !== '' && cached.stamp === stamp) scanned = cached;
    else {
      scanned = readDir(dir, rel, stamp);
      if (!changed && (cached === undefined || !sameDir(cached, scanned))) changed = true;
    }
    dirs.set(rel, scanned);
    for (const sub of scanned.subdirs) visit(join(dir, sub), rel ? `${rel}/${sub}` : sub);
  };

  const readDir = (dir: string, rel: string, stamp: string): ScannedDir => {
    const scanned: ScannedDir = { stamp, masked: [], subdirs: [], repo: false };
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      // Unreadable by this user: the cell user cannot read it either. Read again next time.
      scanned.stamp = '';
      return scanned;
    }
    const masks = matcher.inDir(rel);
    for (const entry of entries) {
      const entryRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.name === '.git') scanned.repo = true;
      if (prune.has(entryRel)) continue;
      if (masks(entry.name)) {
        const kind = entry.isDirectory() ? 'dir' : entry.isSymbolicLink() ? 'link' : 'file';
        scanned.masked.push({ name: entry.name, kind });
        continue;
      }
      if (entry.isDirectory() && !skip.has(entry.name)) scanned.subdirs.push(entry.name);
    }
    return scanned;
  };

  visit(workspace, '');
  return {
    repos: [...dirs].flatMap(([rel, d]) => (d.repo ? [rel] : [])),
    masked: [...dirs].flatMap(([dir, d]) => d.masked.map((entry) => ({ dir, ...entry }))),
    dirs: () => dirs,
    changed: changed || reusable.size !== dirs.size,
  };
}

/**
 * A directory's stamp now (empty when it changed too recently to trust), or undefined
 * when it is not a directory. The workspace may be named through a link; below it, a
 * link is never followed.
 */
function dirStamp(dir: string, rel: string, settledBefore: number): string | undefined {
  try {
    const s = rel === '' ? statSync(dir) : lstatSync(dir);
    if (!s.isDirectory()) return undefined;
    const settled = s.mtimeMs < settledBefore && s.ctimeMs < settledBefore;
    return settled ? `${s.dev}:${s.ino}:${s.mtimeMs}:${s.ctimeMs}` : '';
  } catch {
    return undefined;
  }
}

/**
 * Whether every directory of the last scan still has the stamp it had. Then a walk would
 * read none of them, descend into the same subdirectories, and find what that scan found.
 * Read from the cache's `dirs` string as saved: each `/`-field, then its stamp.
 */
function stampsHold(workspace: string, savedDirs: string, settledBefore: number): boolean {
  // Concatenated, not join()ed: the relative paths are readdir names joined by '/'.
  const base = workspace.endsWith('/') ? workspace : `${workspace}/`;
  const fields = savedDirs.split('\0');
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    if (!field.startsWith('/')) continue;
    const rel = field.slice(1);
    const stamp = fields[++i] ?? '';
    if (stamp === '' || dirStamp(rel === '' ? workspace : base + rel, rel, settledBefore) !== stamp) return false;
  }
  return true;
}

/** The directories of a saved cache, decoded, in the walk's order. */
function cachedDirs(cache: SecretScanCache): Map<string, ScannedDir> {
  const repos = new Set(cache.repos);
  const dirs = new Map<string, ScannedDir>();
  const fields = cache.dirs.split('\0');
  let current: ScannedDir | undefined;
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i]!;
    if (!field.startsWith('/')) current?.subdirs.push(field);
    else {
      const rel = field.slice(1);
      current = { stamp: fields[++i] ?? '', subdirs: [], masked: [], repo: repos.has(rel) };
      dirs.set(rel, current);
    }
  }
  for (const { dir, name, kind } of cache.masked) dirs.get(dir)?.masked.push({ name, kind });
  return dirs;
}

function cachedIndexes(cache: SecretScanCache): Map<string, ScannedIndex> {
  return new Map(cache.indexes.map(({ gitDir, stamp, secrets }) => [gitDir, { stamp, secrets }]));
}

function toCache(key: string, dirs: Map<string, ScannedDir>, indexes: Map<string, ScannedIndex>): SecretScanCache {
  const fields: string[] = [];
  const cache: SecretScanCache = { key, dirs: '', masked: [], repos: [], indexes: [] };
  for (const [rel, d] of dirs) {
    fields.push(`/${rel}`, d.stamp, ...d.subdirs);
    for (const entry of d.masked) cache.masked.push({ dir: rel, ...entry });
    if (d.repo) cache.repos.push(rel);
  }
  cache.dirs = fields.join('\0');
  for (const [gitDir, scanned] of indexes) cache.indexes.push({ gitDir, ...scanned });
  return cache;
}

function sameDir(a: ScannedDir, b: ScannedDir): boolean {
  return (
    a.stamp === b.stamp &&
    a.repo === b.repo &&
    a.subdirs.join('\0') === b.subdirs.join('\0') &&
    JSON.stringify(a.masked) === JSON.stringify(b.masked)
  );
}

/** The secret-named paths in each repository's index, listed again only when the index changed. */
function scanIndexes(
  realWorkspace: string,
  repos: readonly string[],
  matcher: GlobSet,
  previous: ReadonlyMap<string, ScannedIndex> | undefined,
  settledBefore: number,
): { tracked: string[]; unchecked: string[]; indexes: Map<string, ScannedIndex>; changed: boolean } {
  const indexes = new Map<string, ScannedIndex>();
  const tracked: string[] = [];
  const unchecked: string[] = [];
  let changed = false;
  for (const dir of repos) {
    const repo = workspaceRepository(realWorkspace, dir);
    const stamp = repo && indexStamp(repo.gitDir, settledBefore);
    if (!repo || stamp === undefined) continue;
    const id = relative(realWorkspace, repo.gitDir);
    let scanned = previous?.get(id);
    if (scanned === undefined || stamp === '' || scanned.stamp !== stamp) {
      const before = scanned;
      try {
        const prefix = dir ? `${dir}/` : '';
        scanned = { stamp, secrets: secretPaths(trackedPaths(repo, realWorkspace), prefix, matcher) };
      } catch (error) {
        unchecked.push(`${dir || '.'}: ${(error as Error).message}`);
        continue;
      }
      if (before?.stamp !== stamp || before.secrets.join('\0') !== scanned.secrets.join('\0')) changed = true;
    }
    indexes.set(id, scanned);
    tracked.push(...scanned.secrets);
  }
  if ((previous?.size ?? 0) !== indexes.size) changed = true;
  return { tracked: [...new Set(tracked)].sort(), unchecked, indexes, changed };
}

/**
 * The paths (prefixed to be workspace-relative) that the matcher masks, by their own
 * name or by a directory above them, judged top-down as the walk does. Each directory is
 * judged once.
 */
function secretPaths(paths: readonly string[], prefix: string, matcher: GlobSet): string[] {
  // For each directory: whether it or one above it is masked, and the matcher of its entries.
  const judged = new Map<string, { masked: boolean; inDir: (name: string) => boolean }>();
  const judge = (dir: string): { masked: boolean; inDir: (name: string) => boolean } => {
    let known = judged.get(dir);
    if (known) return known;
    const slash = dir.lastIndexOf('/');
    const parent = slash === -1 ? '' : dir.slice(0, slash);
    const above = dir === '' ? undefined : judge(parent);
    const masked = above !== undefined && (above.masked || above.inDir(dir.slice(slash + 1)));
    known = { masked, inDir: masked ? () => true : matcher.inDir(dir) };
    judged.set(dir, known);
    return known;
  };
  const found: string[] = [];
  for (const path of paths) {
    const full = prefix + path;
    const slash = full.lastIndexOf('/');
    if (judge(slash === -1 ? '' : full.slice(0, slash)).inDir(full.slice(slash + 1))) found.push(full);
  }
  return found;
}

/** What to mask for a masked entry: the entry, or the in-workspace target of a symlink (resolved now). */
function maskedPath(dir: string, rel: string, entry: MaskedEntry, realWorkspace: string): MaskedPath | undefined {
  const path = join(dir, entry.name);
  if (entry.kind !== 'link') return { path, relative: rel, kind: entry.kind };
  try {
    const target = realpathSync(path);
    if (target !== realWorkspace && !target.startsWith(realWorkspace + sep)) return undefined;
    return { path: target, relative: rel, kind: statSync(target).isDirectory() ? 'dir' : 'file' };
  } catch {
    return undefined; // dangling link: nothing to read through it
  }
}
