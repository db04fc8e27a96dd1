import { readdirSync, realpathSync, statSync, type Dirent } from 'node:fs';
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
}

const MaskedPathSchema = z.strictObject({
  /** Absolute host path of the file or directory to mask (a symlink's in-workspace target). */
  path: z.string(),
  /** Relative to the workspace, as the user named it. */
  relative: z.string(),
  kind: z.enum(['file', 'dir']),
});
export type MaskedPath = z.infer<typeof MaskedPathSchema>;

/** What one directory held last time, valid while its mtime is unchanged. */
const ScannedDirSchema = z.strictObject({
  mtimeNs: z.string(),
  masked: z.array(MaskedPathSchema),
  subdirs: z.array(z.string()),
  /** It holds a `.git`: a repository whose index is checked for secrets. */
  repo: z.optional(z.literal(true)),
});
type ScannedDir = z.infer<typeof ScannedDirSchema>;

/** The secret-named paths of one version of a repository's index. */
const ScannedIndexSchema = z.strictObject({ stamp: z.string(), secrets: z.array(z.string()) });
type ScannedIndex = z.infer<typeof ScannedIndexSchema>;

/**
 * The previous scan of a workspace. A directory's mtime changes whenever an entry is
 * added, removed or renamed in it, which is all a name-based scan depends on; so an
 * unchanged directory is not read again, and a scan of a large repo costs one stat per
 * directory instead of a readdir.
 */
const SecretScanCacheSchema = z.strictObject({
  /** The workspace and the patterns the cache was made with. */
  key: z.string(),
  dirs: z.record(z.string(), ScannedDirSchema),
  /** By git dir, workspace-relative. */
  indexes: z.optional(z.record(z.string(), ScannedIndexSchema)),
});
export type SecretScanCache = z.infer<typeof SecretScanCacheSchema>;

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

/**
 * Finds the workspace entries to mask (see secret-patterns.ts for how patterns match).
 * A masked directory is not descended into. A matching symlink is resolved: its target
 * is masked if it is inside the workspace, and ignored otherwise (outside targets are not
 * in the cell unless a mount puts them there). Then, for each repository whose git dir is
 * in the workspace, which of the paths its index holds the patterns would mask.
 */
export function scanSecrets(workspace: string, options: SecretScanOptions, previous?: SecretScanCache): SecretScan {
  const matcher = secretMatcher(options.hide, options.expose);
  const skip = new Set(options.skip);
  const prune = new Set(options.prune);
  const realWorkspace = realpathSync(workspace);
  const key = JSON.stringify([realWorkspace, options.hide, options.expose, options.skip, options.prune ?? []]);
  const reusable = previous?.key === key ? previous.dirs : {};
  const dirs: Record<string, ScannedDir> = {};
  let changed = previous?.key !== key;

  const visit = (dir: string, rel: string): void => {
    let mtimeNs: string;
    try {
      mtimeNs = statSync(dir, { bigint: true }).mtimeNs.toString();
    } catch {
      return;
    }
    let scanned = reusable[rel];
    if (scanned?.mtimeNs !== mtimeNs) {
      changed = true;
      scanned = readDir(dir, rel, mtimeNs);
    }
    dirs[rel] = scanned;
    for (const sub of scanned.subdirs) visit(join(dir, sub), rel ? `${rel}/${sub}` : sub);
  };

  const readDir = (dir: string, rel: string, mtimeNs: string): ScannedDir => {
    const scanned: ScannedDir = { mtimeNs, masked: [], subdirs: [] };
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return scanned; // unreadable by this user: the cell user cannot read it either
    }
    const masks = matcher.inDir(rel);
    for (const entry of entries) {
      const entryRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.name === '.git') scanned.repo = true;
      if (prune.has(entryRel)) continue;
      if (masks(entry.name)) {
        const masked = maskable(join(dir, entry.name), entryRel, entry, realWorkspace);
        if (masked) scanned.masked.push(masked);
        continue;
      }
      if (entry.isDirectory() && !skip.has(entry.name)) scanned.subdirs.push(entry.name);
    }
    return scanned;
  };

  visit(workspace, '');
  if (Object.keys(reusable).length !== Object.keys(dirs).length) changed = true;
  const repos = Object.entries(dirs).flatMap(([rel, d]) => (d.repo ? [rel] : []));
  const index = scanIndexes(realWorkspace, repos, matcher, previous?.key === key ? previous.indexes : undefined);
  if (index.changed) changed = true;
  return {
    masked: Object.values(dirs).flatMap((d) => d.masked),
    tracked: index.tracked,
    unchecked: index.unchecked,
    cache: { key, dirs, indexes: index.indexes },
    changed,
  };
}

/** The secret-named paths in each repository's index, listed again only when the index changed. */
function scanIndexes(
  realWorkspace: string,
  repos: readonly string[],
  matcher: GlobSet,
  previous: Record<string, ScannedIndex> | undefined,
): { tracked: string[]; unchecked: string[]; indexes: Record<string, ScannedIndex>; changed: boolean } {
  const indexes: Record<string, ScannedIndex> = {};
  const tracked: string[] = [];
  const unchecked: string[] = [];
  let changed = false;
  for (const dir of repos) {
    const repo = workspaceRepository(realWorkspace, dir);
    const stamp = repo && indexStamp(repo.gitDir);
    if (!repo || stamp === undefined) continue;
    const id = relative(realWorkspace, repo.gitDir);
    let scanned = previous?.[id];
    if (scanned?.stamp !== stamp) {
      changed = true;
      try {
        const prefix = dir ? `${dir}/` : '';
        scanned = { stamp, secrets: secretPaths(trackedPaths(repo, realWorkspace), prefix, matcher) };
      } catch (error) {
        unchecked.push(`${dir || '.'}: ${(error as Error).message}`);
        continue;
      }
    }
    indexes[id] = scanned;
    tracked.push(...scanned.secrets);
  }
  if (Object.keys(previous ?? {}).length !== Object.keys(indexes).length) changed = true;
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

function maskable(path: string, rel: string, entry: Dirent, realWorkspace: string): MaskedPath | undefined {
  if (entry.isDirectory()) return { path, relative: rel, kind: 'dir' };
  if (!entry.isSymbolicLink()) return { path, relative: rel, kind: 'file' };
  try {
    const target = realpathSync(path);
    if (target !== realWorkspace && !target.startsWith(realWorkspace + sep)) return undefined;
    return { path: target, relative: rel, kind: statSync(target).isDirectory() ? 'dir' : 'file' };
  } catch {
    return undefined; // dangling link: nothing to read through it
  }
}
