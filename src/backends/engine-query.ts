import { execFile, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

/**
 * A read-only question to an engine CLI (`image inspect`, `info`, `version`), which a
 * plan and a `--dry-run` ask. podman 4 with the CNI network backend creates
 * `~/.config/cni/net.d/cni.lock` on every command it runs, a query included, so a dry
 * run would leave a file in the user's config dir. A query never touches networks: it
 * gets a network config dir of its own, made and removed around the call, so nothing is
 * left anywhere (netavark keeps its networks in podman's store and ignores the dir).
 */
export function queryEngineSync(
  engine: string,
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; timeout: number },
): SpawnSyncReturns<string> {
  const scratch = queryScratch(engine);
  try {
    return spawnSync(engine, [...scratch.args, ...args], { encoding: 'utf8', ...options });
  } finally {
    scratch.remove();
  }
}

export interface QueryResult {
  error: (Error & { code?: string | number | null }) | null;
  stdout: string;
  stderr: string;
}

/** {@link queryEngineSync} without blocking. */
export function queryEngine(
  engine: string,
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; timeout: number },
): Promise<QueryResult> {
  const scratch = queryScratch(engine);
  return new Promise((resolve) => {
    execFile(engine, [...scratch.args, ...args], { encoding: 'utf8', ...options }, (error, stdout, stderr) => {
      scratch.remove();
      resolve({ error, stdout, stderr });
    });
  });
}

/** An engine CLI (a path or a name) that takes a network lock in its config dir on every command: podman's. */
function locksNetworkConfig(engine: string): boolean {
  return basename(engine) === 'podman';
}

function queryScratch(engine: string): { args: string[]; remove: () => void } {
  if (!locksNetworkConfig(engine)) return { args: [], remove: () => undefined };
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-podman-query-'));
  return {
    args: ['--network-config-dir', dir],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
