import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { join } from 'node:path';

/** Files up to this size are hashed by content; larger ones by size and mtime (a checkpoint stays cheap). */
export const CONTENT_HASH_LIMIT = 1024 * 1024;

/**
 * A frozen layer's fingerprint, recorded at checkpoint and checked before a restore or
 * fork keeps the layer (verified restores): sha256 over the sorted listing of every
 * entry's path, type, mode, size, device number (whiteouts) or link target, and the
 * sha256 of each file's content up to CONTENT_HASH_LIMIT (above it, or where the host
 * can't read it, the file's mtime stands in). Extended attributes (the opaque-dir mark)
 * are not covered.
 */
export function layerContentHash(dir: string): string {
  const total = createHash('sha256');
  const walk = (rel: string): void => {
    let names: string[];
    try {
      names = readdirSync(rel ? join(dir, rel) : dir).sort();
    } catch {
      total.update(`${JSON.stringify(rel)}\tunlistable\n`); // a mode the cell set: its entry above still counts
      return;
    }
    for (const name of names) {
      const path = rel ? `${rel}/${name}` : name;
      const full = join(dir, path);
      const s = lstatSync(full, { bigint: true });
      const type = s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : s.isFile() ? 'f' : 'o';
      let extra = '';
      if (type === 'l') extra = readlinkSync(full);
      else if (type === 'o') extra = `rdev=${s.rdev}`;
      else if (type === 'f') extra = fileDigest(full, Number(s.size)) ?? `mtime=${s.mtimeNs}`;
      total.update(`${JSON.stringify(path)}\t${type}\t${(s.mode & 0o7777n).toString(8)}\t${s.size}\t${extra}\n`);
      if (type === 'd') walk(path);
    }
  };
  walk('');
  return `sha256:${total.digest('hex')}`;
}

function fileDigest(path: string, size: number): string | undefined {
  if (size > CONTENT_HASH_LIMIT) return undefined;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined; // unreadable to the host (a mode the cell set): its mtime stands in
  }
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.alloc(64 * 1024);
    let n: number;
    while ((n = readSync(fd, buffer, 0, buffer.length, null)) > 0) hash.update(buffer.subarray(0, n));
    return hash.digest('hex');
  } finally {
    closeSync(fd);
  }
}
