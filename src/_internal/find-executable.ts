import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Where `name` is on the host: the first executable of that name on PATH (absolute dirs only), then `fallbackDirs`. */
export function findExecutable(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  fallbackDirs: readonly string[] = [],
): string | undefined {
  for (const dir of [...(env['PATH'] ?? '').split(delimiter), ...fallbackDirs]) {
    if (!dir.startsWith('/')) continue;
    const candidate = join(dir, name);
    // A stat that returns undefined, not a throw, for the usual miss: a run looks up a dozen
    // tools along a PATH of a dozen dirs, and each thrown ENOENT costs an Error and its stack.
    try {
      if (!statSync(candidate, { throwIfNoEntry: false })?.isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Where distributions install system tools: searched after PATH for the tools a cell's launch runs on the host. */
export const SYSTEM_DIRS: readonly string[] = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];

/**
 * A tool that a cell's launch runs on the host (bwrap, prlimit), by absolute path: on
 * agentcell's own PATH, then in SYSTEM_DIRS, else `/usr/bin/NAME` (which then fails plainly).
 * The launch chain runs with the cell's environment, so a bare name would be looked up along
 * the cell's PATH on the host: an agent's toolchain dir, or a policy's `[env] PATH`, whose
 * `bwrap` would then run outside the cell. A lookup also costs a failed exec per PATH entry.
 */
export function hostTool(name: string): string {
  return findExecutable(name, process.env, SYSTEM_DIRS) ?? `/usr/bin/${name}`;
}
