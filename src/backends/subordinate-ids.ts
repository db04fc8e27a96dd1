import { readFileSync } from 'node:fs';

/** The ranges of subordinate uids and gids a user has (rootless podman maps the cell's ids from them); read-only. */
export function subordinateIds(user: string, uid: number): { uids?: string; gids?: string } {
  const range = (file: string): string | undefined =>
    readText(file)
      .split('\n')
      .find((line) => line.startsWith(`${user}:`) || line.startsWith(`${uid}:`));
  const uids = range('/etc/subuid');
  const gids = range('/etc/subgid');
  return { ...(uids ? { uids } : {}), ...(gids ? { gids } : {}) };
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
