import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { AgentcellError } from '../errors.js';

/**
 * `mkdir -p` that fails instead of spinning. Node's own `mkdirSync(…, { recursive: true })`
 * loops forever at 100% CPU when a parent exists but mkdir in it says ENOENT (e.g. under
 * /proc), so src/ never uses it (lint refuses it): this creates one missing component at a
 * time and turns any failure into an error naming the path (exit 3).
 */
export function makeDirs(path: string, mode = 0o777): void {
  const missing: string[] = [];
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    const kind = pathKind(dir);
    if (kind === 'dir') break;
    if (kind === 'other') throw unusable(path, `${dir} exists and is not a directory`);
    missing.push(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir, { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST' && pathKind(dir) === 'dir') continue; // made meanwhile
      throw unusable(path, `mkdir ${dir}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  }
}

function pathKind(path: string): 'dir' | 'other' | 'missing' {
  try {
    return statSync(path).isDirectory() ? 'dir' : 'other';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    throw unusable(path, `${path}: ${code ?? String(error)}`);
  }
}

function unusable(path: string, why: string): AgentcellError {
  return new AgentcellError(
    'PATH_UNUSABLE',
    `cannot create the directory ${path} (${why}); if it is under AGENTCELL_HOME, XDG_STATE_HOME or XDG_CONFIG_HOME, point that at a writable directory`,
  );
}
