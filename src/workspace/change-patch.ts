import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { FILE_HEADERS_ONLY, structuredPatch, formatPatch } from 'diff';
import type { LayerChange } from './overlay/layer-diff.js';

/** One changed path as a unified diff, the way `git diff` would print it. */
export interface ChangePatch {
  path: string;
  change: LayerChange['change'];
  /** The unified diff (`diff --git` header, ---/+++ lines, hunks); for binaries only the header and a note. */
  patch: string;
  binary: boolean;
  /** Lines added and removed (0 for binaries). */
  added: number;
  removed: number;
}

/** Files bigger than this are named, not diffed (as git does for binaries). */
const MAX_DIFF_BYTES = 8 * 1024 * 1024;

/**
 * The unified diff of one pending change: the workspace's version against the cell's
 * (`cellFile`, the entry in the layer that decides the path). Directories have no
 * content of their own; a symlink's content is its target, as git shows it.
 */
export function changePatch(
  change: LayerChange,
  workspace: string,
  cellFile: string | undefined,
): ChangePatch | undefined {
  if (change.kind === 'dir') return undefined;
  const none = Buffer.alloc(0);
  const before = change.change === 'added' ? none : contentOf(join(workspace, change.path));
  const after = change.change === 'deleted' || cellFile === undefined ? none : contentOf(cellFile);
  const header = `diff --git a/${change.path} b/${change.path}\n`;
  const oldMode = change.change === 'added' ? undefined : gitMode(join(workspace, change.path));
  const newMode = change.change === 'deleted' || cellFile === undefined ? undefined : gitMode(cellFile);
  const mode =
    change.change === 'added'
      ? `new file mode ${newMode}\n`
      : change.change === 'deleted'
        ? `deleted file mode ${oldMode}\n`
        : oldMode !== newMode
          ? `old mode ${oldMode}\nnew mode ${newMode}\n`
          : '';
  if (before === undefined || after === undefined || isBinary(before) || isBinary(after))
    return {
      path: change.path,
      change: change.change,
      patch: `${header}${mode}Binary files ${change.change === 'added' ? '/dev/null' : `a/${change.path}`} and ${change.change === 'deleted' ? '/dev/null' : `b/${change.path}`} differ\n`,
      binary: true,
      added: 0,
      removed: 0,
    };
  const structured = structuredPatch(
    change.change === 'added' ? '/dev/null' : `a/${change.path}`,
    change.change === 'deleted' ? '/dev/null' : `b/${change.path}`,
    before.toString('utf8'),
    after.toString('utf8'),
    undefined,
    undefined,
    { context: 3 },
  );
  let added = 0;
  let removed = 0;
  for (const hunk of structured.hunks)
    for (const line of hunk.lines) {
      if (line.startsWith('+')) added++;
      else if (line.startsWith('-')) removed++;
    }
  const body = formatPatch(structured, FILE_HEADERS_ONLY).replace(/\t$/gm, '');
  return { path: change.path, change: change.change, patch: `${header}${mode}${body}`, binary: false, added, removed };
}

/** `git diff --stat`-style lines: `path | N +++--`, then the totals. */
export function patchStat(patches: readonly ChangePatch[], width = 40): string {
  const longest = Math.max(0, ...patches.map((p) => p.path.length));
  const most = Math.max(1, ...patches.map((p) => p.added + p.removed));
  const lines = patches.map((p) => {
    if (p.binary) return ` ${p.path.padEnd(longest)} | Bin`;
    const total = p.added + p.removed;
    const scale = Math.min(1, width / most);
    const plus = '+'.repeat(Math.round(p.added * scale));
    const minus = '-'.repeat(Math.round(p.removed * scale));
    return ` ${p.path.padEnd(longest)} | ${String(total).padStart(String(most).length)} ${plus}${minus}`.trimEnd();
  });
  const added = patches.reduce((n, p) => n + p.added, 0);
  const removed = patches.reduce((n, p) => n + p.removed, 0);
  lines.push(` ${patches.length} file(s) changed, ${added} insertion(s)(+), ${removed} deletion(s)(-)`);
  return lines.join('\n');
}

/** Whether a change's path is one the user named (the path itself or a directory above it). */
export function matchesPaths(path: string, wanted: readonly string[]): boolean {
  return wanted.some((w) => {
    const prefix = w.replace(/\/+$/, '');
    return prefix === '' || prefix === '.' || path === prefix || path.startsWith(`${prefix}/`);
  });
}

/** The mode git records: a link, an executable or a plain file. */
function gitMode(file: string): string {
  const stat = lstatSync(file, { throwIfNoEntry: false });
  if (stat?.isSymbolicLink()) return '120000';
  return stat && (stat.mode & 0o111) !== 0 ? '100755' : '100644';
}

function contentOf(file: string): Buffer | undefined {
  const stat = lstatSync(file, { throwIfNoEntry: false });
  if (!stat) return Buffer.alloc(0);
  if (stat.isSymbolicLink()) return Buffer.from(readlinkSync(file));
  if (!stat.isFile() || stat.size > MAX_DIFF_BYTES) return undefined;
  return readFileSync(file);
}

/** Git's rule: a NUL byte in the first 8000 bytes makes a file binary. */
function isBinary(content: Buffer): boolean {
  return content.subarray(0, 8000).includes(0);
}
