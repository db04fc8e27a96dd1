import { join } from 'node:path';
import type { BackendName } from '../_internal/vocabulary.js';
import type { Backend, BackendProbe } from './backend.js';
import { createBwrapBackend } from './bwrap-backend.js';
import { createOciBackend } from './oci-backend.js';
import { ENGINE_OF, ociCapabilities } from './oci-capabilities.js';
import { lookupImageDigest, type DigestLookup } from './image-digest.js';
import { engineEnvironment, type OciEngine } from './oci-engine.js';
import { AgentcellError } from '../errors.js';
import { withProbeFix } from './probe-fix.js';
import { neutralRuntimeDir } from '../_internal/neutral-dir.js';

export interface BackendContext {
  /** agentcell's state dir (for the OCI backends' mask sources). */
  stateDir: string;
  hostEnv: NodeJS.ProcessEnv;
  hostUid?: number;
  hostGid?: number;
}

/**
 * The backend a policy names. The OCI ones differ only by their capabilities
 * (oci-capabilities.ts): gVisor is docker with `--runtime runsc` (docker is where runsc
 * registers as a runtime; see scripts/start-dockerd.sh).
 */
export function createBackend(name: BackendName, context: BackendContext): Backend {
  if (name === 'bwrap') return createBwrapBackend();
  const common = {
    // Bound into every cell: on /dev/shm, its mountinfo shows no path of the state dir's (neutral-dir.ts).
    maskDir: join(neutralRuntimeDir() ?? join(context.stateDir, 'oci'), 'masks'),
    seccompDir: join(context.stateDir, 'oci', 'seccomp'),
    pidDir: join(context.stateDir, 'oci', 'pids'),
    hostEnv: context.hostEnv,
    hostUid: context.hostUid ?? process.getuid?.() ?? 1000,
    hostGid: context.hostGid ?? process.getgid?.() ?? 1000,
  };
  return createOciBackend({ ...common, name });
}

/**
 * A backend's own probe, as `doctor` reports it and a failing run names its fix. Probes
 * read the host and ask the engine; they never touch agentcell's state dir, so none is given.
 */
export function probeBackend(name: BackendName, hostEnv: NodeJS.ProcessEnv): BackendProbe {
  return createBackend(name, { stateDir: '/nonexistent/agentcell-probe', hostEnv }).probe();
}

/** The image an OCI cell runs when the policy names none (what `agentcell image build` tags by default). */
export const DEFAULT_CELL_IMAGE = 'localhost/agentcell/cell:latest';

/** The engine a backend drives, if it is an OCI one. */
export function engineOf(name: BackendName): OciEngine | undefined {
  return name === 'bwrap' ? undefined : ENGINE_OF[name];
}

export interface ResolvedCellImage {
  image: { ref: string; digest: string };
  /** What the lookup learned, for a run (never a dry run) to save. */
  cacheUpdate?: DigestLookup['cacheUpdate'];
}

/**
 * The image an OCI cell runs, pinned to its digest before anything starts (the run uses
 * the digest, the receipt records both). Undefined for bwrap. Reads the engine's image
 * store only (see image-digest.ts); asynchronous so a run can look it up while it scans
 * the workspace.
 */
export async function resolveCellImage(
  name: BackendName,
  ref: string | undefined,
  hostEnv: NodeJS.ProcessEnv,
  stateDir: string,
): Promise<ResolvedCellImage | undefined> {
  if (name === 'bwrap') return undefined;
  const image = ref ?? DEFAULT_CELL_IMAGE;
  const uid = process.getuid?.() ?? 1000;
  const { engine, digestLookup } = ociCapabilities(name, uid, hostEnv);
  const env = engineEnvironment(hostEnv);
  const { digest, cacheUpdate } = await lookupImageDigest(engine, digestLookup, image, env, stateDir, uid).catch(
    (error: unknown) => {
      throw withProbeFix(error, () => probeBackend(name, hostEnv));
    },
  );
  if (digest === undefined)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `${engine} has no image ${image}: build one with agentcell image build --from ROOTFS_DIR --tag ${image} --engine ${engine} (or set cell.image / --image)`,
    );
  return cacheUpdate ? { image: { ref: image, digest }, cacheUpdate } : { image: { ref: image, digest } };
}
