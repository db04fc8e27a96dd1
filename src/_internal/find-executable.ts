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
