import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { findExecutable } from '../_internal/find-executable.js';
import { readJsonCache } from '../_internal/state-file.js';
import { writeJsonCache } from '../_internal/write-json-cache.js';

/** `tool-versions.json`, a cache: damaged, it is rebuilt. */
const ToolVersionsSchema = z.record(
  z.string(),
  z.object({ path: z.string(), mtimeMs: z.number(), size: z.number(), version: z.string() }),
);

export interface ToolVersionOptions {
  env?: NodeJS.ProcessEnv;
  /** The version from `--version`'s output (default: its first line). */
  parse?: (output: string) => string;
  /** How long `--version` may take (default 10 s: an engine CLI on a loaded machine is slow). */
  timeoutMs?: number;
}

/**
 * A tool's `--version`, remembered per binary (path, size and mtime) in the state dir:
 * receipts record versions, and spawning the tool on every run would cost milliseconds.
 * A tool that exits non-zero is remembered as `unknown`; one that timed out or could not
 * be started is `unknown` this time only, so a slow moment never sticks to the binary
 * (receipts hash fingerprints holding these versions: a stuck `unknown` would split them).
 */
export function toolVersion(stateDir: string, tool: string, options: ToolVersionOptions = {}): string {
  const { env = process.env, parse = firstLine, timeoutMs = 10_000 } = options;
  const path = findExecutable(tool, env);
  if (!path) return 'not found';
  const stat = statSync(path);
  const cacheFile = join(stateDir, 'tool-versions.json');
  const cache = readJsonCache(cacheFile, ToolVersionsSchema) ?? {};
  const hit = cache[tool];
  if (hit && hit.path === path && hit.mtimeMs === stat.mtimeMs && hit.size === stat.size) return hit.version;
  const result = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: timeoutMs });
  if (result.error || result.status === null) return 'unknown';
  const version = result.status === 0 ? parse(result.stdout) : 'unknown';
  cache[tool] = { path, mtimeMs: stat.mtimeMs, size: stat.size, version };
  writeJsonCache(cacheFile, cache);
  return version;
}

function firstLine(output: string): string {
  return output.trim().split('\n')[0] ?? '';
}

/** `bubblewrap 0.8.0`, `podman version 4.3.1`, `Docker version 28.2.2, build …`, `runsc version 0.0~2022…`: the number. */
export function versionNumber(output: string): string {
  const first = output.trim().split('\n')[0] ?? '';
  return /(?:version\s+|^bubblewrap\s+)([^\s,]+)/i.exec(first)?.[1] ?? first;
}
