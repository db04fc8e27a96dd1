import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { readJsonCache } from '../_internal/state-file.js';

/**
 * Podman has no daemon to ask cheaply: `podman image inspect` is a 60–90 ms process on
 * every run. Its local store keeps every image's names in one metadata file,
 * `GRAPHROOT/DRIVER-images/images.json`, rewritten (a new inode) whenever a name is
 * added, moved or removed. So a digest looked up once stays right while that file, the
 * storage configuration and the engine's environment are exactly as they were when it
 * was looked up; any change is a miss and a fresh lookup. The run still runs by digest
 * (`--pull never`), so the receipt always names the image that ran.
 */
const PodmanDigestCacheSchema = z.object({
  /** The store's metadata file for one engine setup (from `podman info`, asked once per setup). */
  store: z.optional(z.object({ setup: z.string(), path: z.string() })),
  /** By image ref: the digest, and the setup and store stamp it was looked up under. */
  digests: z.record(z.string(), z.object({ digest: z.string(), setup: z.string(), stamp: z.string() })),
});
export type PodmanDigestCache = z.infer<typeof PodmanDigestCacheSchema>;

export function podmanDigestCacheFile(stateDir: string): string {
  return join(stateDir, 'oci', 'podman-digests.json');
}

/** Missing or damaged, the cache starts empty and is rebuilt: it only saves lookups. */
export function readPodmanDigestCache(path: string): PodmanDigestCache {
  return readJsonCache(path, PodmanDigestCacheSchema) ?? { digests: {} };
}

/**
 * What decides where podman's store is and how it resolves names: its environment,
 * our uid (rootless or not) and its storage.conf files, as found now. Undefined when
 * podman is remote (a machine or a connection: its store is not on this host).
 */
export function podmanSetup(env: Record<string, string>, uid: number): string | undefined {
  if (env['CONTAINER_HOST'] || env['CONTAINER_CONNECTION']) return undefined;
  const configHome = env['XDG_CONFIG_HOME'] ?? join(env['HOME'] ?? '/', '.config');
  const configs = [
    env['CONTAINERS_STORAGE_CONF'],
    '/etc/containers/storage.conf',
    '/usr/share/containers/storage.conf',
    join(configHome, 'containers', 'storage.conf'),
  ].filter((p): p is string => p !== undefined);
  return JSON.stringify({ uid, env, configs: configs.map((p) => [p, fileStamp(p)]) });
}

/** A file's identity and version; changes whenever the file is replaced or written. */
export function fileStamp(path: string): string {
  try {
    const s = statSync(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.mtimeNs}:${s.ctimeNs}:${s.size}`;
  } catch {
    return 'absent';
  }
}

/**
 * Only fully qualified names (`registry/name[:tag]`, `localhost/…`) are cached: a short
 * name is resolved through registries.conf, which this cache does not watch.
 */
export function isQualifiedRef(ref: string): boolean {
  const slash = ref.indexOf('/');
  if (slash === -1) return false;
  const domain = ref.slice(0, slash);
  return domain === 'localhost' || domain.includes('.') || domain.includes(':');
}

/** Whether the image is in the store this metadata file lists (not in an additional, read-only store). */
export function storeListsImage(storePath: string, digest: string): boolean {
  try {
    return readFileSync(storePath, 'utf8').includes(`"${digest.replace(/^sha256:/, '')}"`);
  } catch {
    return false;
  }
}
