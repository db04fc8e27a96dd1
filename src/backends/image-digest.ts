import { AgentcellError } from '../errors.js';
import { dockerGet, dockerSocketPath } from './docker-socket.js';
import { queryEngine } from './engine-query.js';
import { inspectImageAsync, type OciEngine } from './oci-engine.js';
import type { OciCapabilities } from './oci-capabilities.js';
import {
  fileStamp,
  isQualifiedRef,
  podmanDigestCacheFile,
  podmanSetup,
  readPodmanDigestCache,
  storeListsImage,
  type PodmanDigestCache,
} from './podman-digest-cache.js';

export interface DigestLookup {
  /** `sha256:` + the image id, or undefined when the engine has no such image. */
  digest: string | undefined;
  /** A cache the lookup learned from, for the run (never a dry run) to write. */
  cacheUpdate?: { path: string; cache: PodmanDigestCache };
}

/**
 * The digest an engine has for `ref`, looked up the cheapest way that still asks that
 * engine's own store: docker's API over its local socket (no CLI start-up), podman's
 * digest cache while the store's name list is unchanged (see podman-digest-cache.ts),
 * else the engine CLI.
 */
export async function lookupImageDigest(
  engine: OciEngine,
  how: OciCapabilities['digestLookup'],
  ref: string,
  env: Record<string, string>,
  stateDir: string,
  uid: number,
): Promise<DigestLookup> {
  if (how === 'daemon-api') return { digest: await dockerDigest(ref, env) };
  const setup = isQualifiedRef(ref) ? podmanSetup(env, uid) : undefined;
  if (setup === undefined) return { digest: await inspectImageAsync(engine, ref, env) };
  const path = podmanDigestCacheFile(stateDir);
  const cache = readPodmanDigestCache(path);
  const store = cache.store?.setup === setup ? cache.store.path : undefined;
  const before = store === undefined ? undefined : fileStamp(store);
  const hit = cache.digests[ref];
  if (hit && before !== undefined && before !== 'absent' && hit.setup === setup && hit.stamp === before)
    return { digest: hit.digest };
  const [digest, storePath] = await Promise.all([
    inspectImageAsync(engine, ref, env),
    store ?? podmanStorePath(env).catch(() => undefined),
  ]);
  if (storePath === undefined) return { digest };
  cache.store = { setup, path: storePath };
  // Remembered only if the name list did not change while podman looked (and lists this image).
  const after = fileStamp(storePath);
  if (digest !== undefined && before === after && after !== 'absent' && storeListsImage(storePath, digest))
    cache.digests[ref] = { digest, setup, stamp: after };
  else delete cache.digests[ref];
  return { digest, cacheUpdate: { path, cache } };
}

async function dockerDigest(ref: string, env: Record<string, string>): Promise<string | undefined> {
  const socket = dockerSocketPath(env);
  // A ref with other characters than a reference has goes to the CLI, which checks it.
  if (socket === undefined || !/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/.test(ref))
    return inspectImageAsync('docker', ref, env);
  let response;
  try {
    response = await dockerGet(socket, `/images/${ref}/json`);
  } catch {
    // The CLI says why the daemon does not answer, with the fix.
    return inspectImageAsync('docker', ref, env);
  }
  if (response.status === 404) return undefined;
  const id = response.status === 200 ? imageId(response.body) : undefined;
  if (typeof id !== 'string' || !id.startsWith('sha256:'))
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `docker cannot inspect image ${ref}: ${response.body.trim() || `HTTP ${response.status}`} (run agentcell doctor)`,
    );
  return id;
}

function imageId(body: string): unknown {
  try {
    return (JSON.parse(body) as { Id?: unknown }).Id;
  } catch {
    return undefined;
  }
}

/** podman's image metadata file: `GRAPHROOT/DRIVER-images/images.json`. */
async function podmanStorePath(env: Record<string, string>): Promise<string | undefined> {
  const { error, stdout } = await queryEngine(
    'podman',
    ['info', '--format', '{{.Store.GraphRoot}}\t{{.Store.GraphDriverName}}'],
    { env, timeout: 10_000 },
  );
  const [root, driver] = stdout.trim().split('\t');
  return error || !root || !driver ? undefined : `${root}/${driver}-images/images.json`;
}
