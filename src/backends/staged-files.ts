import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { copyFileSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { makeNeutralDir, neutralRunEntry, neutralRuntimeDir } from '../_internal/neutral-dir.js';
import type { CellSpec, ExtraMount } from './backend.js';

/** A file the cell gets as a copy rather than a bind of its host path. */
export interface StagedFile {
  source: string;
  copy: string;
}

/** The run's copies of small read-only files: made before the cell starts, removed after. */
export interface FileStaging {
  dir: string;
  files: StagedFile[];
}

/** Larger files (a node binary) stay binds: copying them each run would cost more than it hides. */
const MAX_STAGED_BYTES = 1024 * 1024;

export interface StagedBinds {
  /** Every read-only and read-write bind of the spec (its mounts, then the egress binds), sources swapped for copies. */
  binds: ExtraMount[];
  staging?: FileStaging;
  /** Set when there is nowhere neutral to copy to: a line for the plan's gaps. */
  gap?: string;
}

/**
 * The spec's extra binds, with each small read-only file (the bridge script, the cell CA,
 * the cell's ssh key and config, a `[[mount]]`ed dotfile) replaced by a copy in a run
 * directory on /dev/shm (neutral-dir.ts): a bind shows in the cell's mountinfo as its
 * source's path within its filesystem, and a copy's is `/agentcell-UID/run-…/NAME`, not
 * the state dir's, the config dir's or agentcell's install path. A source that does not
 * exist yet counts as a file (the run writes the CA's trust bundle when it starts), so
 * plan and dry run agree, unless the mount says it is a directory (an agent's toolchain,
 * installed after the plan). Directories, sockets (the egress socket: already on /dev/shm)
 * and read-write binds stay binds. Reads the host; changes nothing.
 */
export function stageSmallFiles(spec: DeepReadonly<CellSpec>): StagedBinds {
  const binds: ExtraMount[] = [
    ...spec.mounts,
    ...(spec.network === 'gateway' && spec.egress
      ? spec.egress.binds.map((b): ExtraMount => ({ ...b, mode: 'ro' }))
      : []),
  ];
  const socket = spec.egress?.socketPath;
  const stageable = (m: ExtraMount): boolean =>
    m.mode === 'ro' && m.directory !== true && m.source !== socket && isSmallFile(m.source);
  if (!binds.some(stageable)) return { binds };
  const neutral = neutralRuntimeDir();
  if (!neutral)
    return {
      binds,
      gap: "no tmpfs at /dev/shm: the cell's mountinfo shows the host paths of the files agentcell binds into it",
    };
  const dir = join(neutral, neutralRunEntry('run', spec.cell));
  const files: StagedFile[] = [];
  const staged = binds.map((m) => {
    if (!stageable(m)) return m;
    const copy = join(dir, `${files.length}-${basename(m.target)}`);
    files.push({ source: m.source, copy });
    return { ...m, source: copy };
  });
  return { binds: staged, staging: { dir, files } };
}

/** Copies the staged files (keeping each one's mode) into their private run directory. */
export function makeStagedFiles(staging: DeepReadonly<FileStaging>): void {
  rmSync(staging.dir, { recursive: true, force: true }); // a killed run's leftover of this pid
  makeNeutralDir(staging.dir);
  for (const { source, copy } of staging.files) copyFileSync(source, copy);
}

export function removeStagedFiles(staging: DeepReadonly<FileStaging>): void {
  rmSync(staging.dir, { recursive: true, force: true });
}

function isSmallFile(path: string): boolean {
  try {
    const stat = statSync(path);
    return stat.isFile() && stat.size <= MAX_STAGED_BYTES;
  } catch {
    return true; // made by the run before the cell starts (the CA's trust bundle); a copy fails loudly if not
  }
}
