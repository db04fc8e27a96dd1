import { readdirSync, realpathSync, statSync, type Dirent } from 'node:fs';
import { join, relative, sep } from 'node:path';
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

/**
 * Finds the workspace entries to mask. Patterns without a slash match a name at any
 * depth, like .gitignore. A masked directory is not descended into. A matching symlink
 * is resolved: its target is masked if it is inside the workspace, and ignored otherwise
 * (outside targets are not in the cell unless a mount puts them there).
 */
export function scanSecrets(workspace: string, options: SecretScanOptions): MaskedPath[] {
  const hidden = globMatcher(options.hide);
  const exposed = globMatcher(options.expose);
  const skip = new Set(options.skip);
  const found: MaskedPath[] = [];
  const realWorkspace = realpathSync(workspace);

  const visit = (dir: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // unreadable by this user: the cell user cannot read it either
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      const rel = relative(workspace, path).split(sep).join('/');
      if (hidden(rel) && !exposed(rel)) {
        const masked = maskable(path, rel, entry, realWorkspace);
        if (masked) found.push(masked);
        continue;
      }
      if (entry.isDirectory() && !skip.has(entry.name)) visit(path);
    }
  };
  visit(workspace);
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
