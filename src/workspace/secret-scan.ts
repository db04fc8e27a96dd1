import { readdirSync, realpathSync, statSync, type Dirent } from 'node:fs';
import { join, sep } from 'node:path';
import picomatch from 'picomatch';

/** Secret-looking names masked in every cell unless the policy exposes them. */
export const BUILT_IN_HIDE: readonly string[] = [
  '.env',
  '.env.*',
  '*.pem',
  '*.key',
  '*.p12',
  '*.pfx',
  'id_rsa*',
  'id_dsa*',
  'id_ecdsa*',
  'id_ed25519*',
  '.ssh',
  '.aws',
  '.azure',
  '.gnupg',
  '.kube',
  '.docker',
  '.npmrc',
  '.pypirc',
  '.netrc',
  '.git-credentials',
];

export interface SecretScanOptions {
  hide: readonly string[];
  expose: readonly string[];
  /** Directory names not descended into. */
  skip: readonly string[];
}

export interface MaskedPath {
  /** Absolute host path of the file or directory to mask (a symlink's in-workspace target). */
  path: string;
  /** Relative to the workspace, as the user named it. */
  relative: string;
  kind: 'file' | 'dir';
}

/** What one directory held last time, valid while its mtime is unchanged. */
interface ScannedDir {
  mtimeNs: string;
  masked: MaskedPath[];
  subdirs: string[];
}

/**
 * The previous scan of a workspace. A directory's mtime changes whenever an entry is
 * added, removed or renamed in it, which is all a name-based scan depends on; so an
 * unchanged directory is not read again, and a scan of a large repo costs one stat per
 * directory instead of a readdir.
 */
export interface SecretScanCache {
  /** The workspace and the patterns the cache was made with. */
  key: string;
  dirs: Record<string, ScannedDir>;
}

export interface SecretScan {
  masked: MaskedPath[];
  cache: SecretScanCache;
  /** Whether the cache differs from the one passed in (worth writing back). */
  changed: boolean;
}

/**
 * Finds the workspace entries to mask. Patterns without a slash match a name at any
 * depth, like .gitignore. A masked directory is not descended into. A matching symlink
 * is resolved: its target is masked if it is inside the workspace, and ignored otherwise
 * (outside targets are not in the cell unless a mount puts them there).
 */
export function scanSecrets(workspace: string, options: SecretScanOptions, previous?: SecretScanCache): SecretScan {
  const hidden = globMatcher(options.hide);
  const exposed = globMatcher(options.expose);
  const skip = new Set(options.skip);
  const realWorkspace = realpathSync(workspace);
  const key = JSON.stringify([realWorkspace, options.hide, options.expose, options.skip]);
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
    for (const entry of entries) {
      const entryRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (hidden(entryRel) && !exposed(entryRel)) {
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
  return { masked: Object.values(dirs).flatMap((d) => d.masked), cache: { key, dirs }, changed };
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

/**
 * A .gitignore-style matcher: a glob without a slash matches a name at any depth, one
 * with a slash matches the path from the workspace root. Name globs compile as one brace
 * pattern where they allow it: a single parse is ~5x faster than one per glob, and this
 * runs on every start.
 */
function globMatcher(globs: readonly string[]): (path: string) => boolean {
  const byName = compileGlobs(globs.filter((g) => !g.includes('/')));
  const byPath = compileGlobs(globs.filter((g) => g.includes('/')));
  return (path) => byName(path.slice(path.lastIndexOf('/') + 1)) || byPath(path);
}

function compileGlobs(globs: readonly string[]): (path: string) => boolean {
  if (globs.length === 0) return () => false;
  if (globs.length === 1 || globs.some((g) => /[{},\\]/.test(g))) return picomatch([...globs], { dot: true });
  return picomatch(`{${globs.join(',')}}`, { dot: true });
}
