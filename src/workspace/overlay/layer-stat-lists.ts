import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeQuietly, writeFileAtomic } from '../../_internal/atomic-file.js';
import { makeDirs } from '../../_internal/make-dirs.js';

/**
 * The entries a frozen layer's stat hash was taken over (layer-hash.ts), kept in the cell
 * dir so that the next check of the layer lstats them without reading a directory. Named
 * by the hash: a list only ever stands for the walk that gave that hash, and the check
 * recomputes the hash from what is on disk, so a stale, damaged or planted list can make
 * a check slower (it walks instead), never pass. Best effort: a list that can't be read or
 * written is a walk next time.
 */
const DIR = 'stat-lists';

/** A list's file name: the hash's hex; undefined for anything but a sha256 (layers.json's schema does not check this far). */
function listName(statHash: string): string | undefined {
  return /^sha256:([0-9a-f]{64})$/.exec(statHash)?.[1];
}

function listPath(cellDir: string, statHash: string): string | undefined {
  const name = listName(statHash);
  return name === undefined ? undefined : join(cellDir, DIR, name);
}

/** The entries saved for `statHash`, or undefined. */
export function readStatList(cellDir: string, statHash: string): string[] | undefined {
  const path = listPath(cellDir, statHash);
  if (path === undefined) return undefined;
  try {
    const text = readFileSync(path, 'utf8');
    return text === '' ? [] : text.split('\0'); // an empty layer's list is empty
  } catch {
    return undefined;
  }
}

/** Saves the entries of the walk that gave `statHash` (NUL-separated: no name holds one). */
export function saveStatList(cellDir: string, statHash: string, entries: readonly string[]): void {
  const path = listPath(cellDir, statHash);
  if (path === undefined) return;
  try {
    makeDirs(join(cellDir, DIR));
    // Not durable: after a crash a missing or torn list only means a walk.
    writeFileAtomic(path, entries.join('\0'), 0o600, { durable: false });
  } catch {
    // a walk next time
  }
}

/** Deletes the lists of layers no longer in the stack (those of `keep`, stat hashes, stay). */
export function pruneStatLists(cellDir: string, keep: readonly (string | undefined)[]): void {
  const kept = new Set(keep.map((h) => h && listName(h)));
  let names: string[];
  try {
    names = readdirSync(join(cellDir, DIR));
  } catch {
    return;
  }
  for (const name of names) if (!kept.has(name)) removeQuietly(join(cellDir, DIR, name));
}
