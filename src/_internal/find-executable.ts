import { accessSync, constants } from 'node:fs';
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
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
