import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

let found: string | null | undefined;

/**
 * The directory agentcell is installed in (the nearest one above this module with a
 * package.json: the package root, from dist/src/… or the bundled dist/agentcell-main.cjs),
 * or undefined if there is none.
 */
export function agentcellInstallDir(): string | undefined {
  if (found === undefined) {
    found = null;
    for (let dir = dirname(fileURLToPath(import.meta.url)); dirname(dir) !== dir; dir = dirname(dir))
      if (existsSync(`${dir}/package.json`)) {
        found = dir;
        break;
      }
  }
  return found ?? undefined;
}
