import { spawnSync } from 'node:child_process';
import { platform } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentcellError } from '../errors.js';
import { findExecutable } from '../_internal/find-executable.js';
import type { BackendProbe } from './backend.js';
import { queryEngine, queryEngineSync } from './engine-query.js';

/** The container engines the OCI backend drives, through their CLIs. */
export const OCI_ENGINES = ['podman', 'docker'] as const;
export type OciEngine = (typeof OCI_ENGINES)[number];

/** Host variables the engine CLI itself needs (where its daemon or machine is); never passed to the cell. */
export const ENGINE_ENV = [
  'DOCKER_HOST',
  'DOCKER_CONTEXT',
  'DOCKER_CONFIG',
  'DOCKER_CERT_PATH',
  'DOCKER_TLS_VERIFY',
  'CONTAINER_HOST',
  'CONTAINER_CONNECTION',
  'CONTAINERS_CONF',
  'CONTAINERS_STORAGE_CONF',
  'XDG_RUNTIME_DIR',
  'XDG_CONFIG_HOME',
  'XDG_DATA_HOME',
] as const;

const PROBE_TIMEOUT_MS = 5000;
/**
 * `image inspect`, a run's question about the image it is about to run: an engine whose
 * store another command holds locked (a build, a pull, another run's setup) answers late,
 * and a slow answer is not a reason to fail the run.
 */
const INSPECT_TIMEOUT_MS = 30_000;

/** Whether a synchronous engine query ended because it outran its timeout (spawnSync says ETIMEDOUT). */
function timedOut(result: { error?: Error | undefined }): boolean {
  return result.error !== undefined && 'code' in result.error && result.error.code === 'ETIMEDOUT';
}

/** The image digest an engine reports for `ref` (`sha256:` + the image id), or undefined when it has no such image. */
export function inspectImage(engine: OciEngine, ref: string, env: NodeJS.ProcessEnv): string | undefined {
  for (let attempt = 1; ; attempt++) {
    const result = queryEngineSync(engine, inspectArgs(ref), { env, timeout: INSPECT_TIMEOUT_MS });
    const digest = inspectResult(engine, ref, { ...result, timedOut: timedOut(result) }, attempt < STORE_BUSY_ATTEMPTS);
    if (digest !== ASK_AGAIN) return digest;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, STORE_BUSY_PAUSE_MS);
  }
}

/** {@link inspectImage} without blocking: a run starts it early and reads it when it plans. */
export async function inspectImageAsync(
  engine: OciEngine,
  ref: string,
  env: NodeJS.ProcessEnv,
): Promise<string | undefined> {
  for (let attempt = 1; ; attempt++) {
    const { error, stdout, stderr } = await queryEngine(engine, inspectArgs(ref), { env, timeout: INSPECT_TIMEOUT_MS });
    const status = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
    const spawnError = error && typeof error.code === 'string' ? error : undefined;
    // execFile kills a command past its timeout and says so with `killed` (no code).
    const timedOut = error !== null && (error as { killed?: boolean }).killed === true;
    const digest = inspectResult(
      engine,
      ref,
      { status, stdout, stderr, error: spawnError, timedOut },
      attempt < STORE_BUSY_ATTEMPTS,
    );
    if (digest !== ASK_AGAIN) return digest;
    await sleep(STORE_BUSY_PAUSE_MS);
  }
}

/**
 * Rootless podman, while other commands build and remove images in the same store (seen in
 * CI on fresh machines, test files at once), has answered an inspect with exit 0 and no id,
 * and failed one with `locating item named "manifest" for image with ID <another image>: file
 * does not exist`: it reads every image's record to resolve a name, and caught one between
 * its creation and its manifest (a known podman robustness issue, containers/podman#12854).
 * Both come from a write that ends, so the question is asked again a few times first.
 */
const STORE_BUSY_ATTEMPTS = 5;
const STORE_BUSY_PAUSE_MS = 300;
const ASK_AGAIN = Symbol('ask again');
const HALF_WRITTEN_IMAGE = /locating item named "[^"]*" for image with ID "[^"]*": file does not exist/i;

function inspectArgs(ref: string): string[] {
  return ['image', 'inspect', '--format', '{{.Id}}', ref];
}

function inspectResult(
  engine: OciEngine,
  ref: string,
  result: { status: number | null; stdout: string; stderr: string; error?: Error | undefined; timedOut: boolean },
  mayAskAgain: boolean,
): string | undefined | typeof ASK_AGAIN {
  if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT')
    throw new AgentcellError('BACKEND_UNAVAILABLE', `${engine} is not installed (run agentcell doctor)`);
  if (result.timedOut)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `${engine} did not answer \`image inspect ${ref}\` within ${INSPECT_TIMEOUT_MS / 1000}s (its store may be locked by another ${engine} command); try again, or run agentcell doctor`,
    );
  if (result.status !== 0) {
    if (/no such image|image not known|failed to find image/i.test(result.stderr)) return undefined;
    if (mayAskAgain && HALF_WRITTEN_IMAGE.test(result.stderr)) return ASK_AGAIN;
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `${engine} cannot inspect image ${ref}: ${result.stderr.trim() || `exit ${String(result.status)}`} (run agentcell doctor)`,
    );
  }
  const id = result.stdout.trim().split('\n')[0] ?? '';
  // An empty answer is no digest: never run `sha256:`.
  if (id === '') {
    if (mayAskAgain) return ASK_AGAIN;
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `${engine} gave no id for image ${ref}, ${STORE_BUSY_ATTEMPTS} times; try again (or run agentcell doctor)`,
    );
  }
  return id.startsWith('sha256:') ? id : `sha256:${id}`;
}

/** The host environment an engine CLI runs with: PATH and HOME plus its own settings. */
export function engineEnvironment(hostEnv: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', ...ENGINE_ENV]) {
    const value = hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/**
 * Whether an engine answers: the CLI exists and its daemon (docker), machine (podman on
 * macOS and Windows) or local storage (podman on Linux) responds. The fix is the exact
 * command for what is missing.
 */
export function probeEngine(engine: OciEngine, hostEnv: NodeJS.ProcessEnv = process.env): BackendProbe {
  const env = engineEnvironment(hostEnv);
  const facts = ENGINE_FACTS[engine];
  if (!findExecutable(engine, env)) return { available: false, detail: `${engine} not found`, fix: facts.installFix };
  const info = queryEngineSync(engine, ['version', '--format', facts.versionFormat], {
    env,
    timeout: PROBE_TIMEOUT_MS,
  });
  const version = info.stdout.trim();
  if (info.status === 0 && version !== '') return { available: true, version, detail: `${engine} ${version}` };
  const reason = timedOut(info)
    ? `no answer within ${PROBE_TIMEOUT_MS / 1000}s`
    : (info.stderr.trim().split('\n')[0] ?? '') || `exit ${String(info.status)}`;
  const denied = /permission denied/i.test(info.stderr) && facts.permissionFix !== undefined;
  return {
    available: false,
    detail: `${engine} does not answer: ${reason}`,
    fix: denied ? (facts.permissionFix ?? '') : engineFix(engine),
  };
}

/** What agentcell asks each engine CLI, and how it is installed and started: one record per engine. */
interface EngineFacts {
  installFix: string;
  /** `version --format`: the engine's (docker: the daemon's) version. */
  versionFormat: string;
  /** `info --format`: the runtimes the engine knows, as JSON. */
  runtimesFormat: string;
  /** The engine has a daemon whose runtimes are registered in its config (daemon.json). */
  daemonRuntimes: boolean;
  /** The command that makes the engine answer, on Linux and elsewhere. */
  startFix: { linux: string; other: string };
  /** When the engine refuses this user (its socket's permissions). */
  permissionFix?: string;
}

const ENGINE_FACTS: Readonly<Record<OciEngine, EngineFacts>> = {
  podman: {
    installFix: 'sudo apt-get install podman   (Fedora: sudo dnf install podman; macOS: brew install podman)',
    // podman 4 answers {{.Client.Version}}; {{.Version.Version}} is an error there.
    versionFormat: '{{.Client.Version}}',
    runtimesFormat: '{{json .Host.OCIRuntime}}',
    daemonRuntimes: false,
    startFix: {
      linux:
        'podman info   (rootless podman needs /etc/subuid and /etc/subgid ranges: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER)',
      other: 'podman machine init && podman machine start',
    },
  },
  docker: {
    installFix: 'sudo apt-get install docker.io   (macOS/Windows: install Docker Desktop or Colima)',
    versionFormat: '{{.Server.Version}}',
    runtimesFormat: '{{json .Runtimes}}',
    daemonRuntimes: true,
    startFix: {
      linux: 'sudo systemctl start docker   (or run dockerd; a non-root user needs access to /var/run/docker.sock)',
      other: 'start Docker Desktop, or: colima start',
    },
    permissionFix: 'sudo usermod -aG docker "$USER" and log in again (or use rootless podman)',
  },
};

/** The command that makes `engine` answer on this OS. */
export function engineFix(engine: OciEngine): string {
  const { startFix } = ENGINE_FACTS[engine];
  return platform() === 'linux' ? startFix.linux : startFix.other;
}

/** How runsc should be registered: no netstack, the gateway's socket only, and the container's seccomp profile applied. */
const RUNSC_ARGS = ['--network=none', '--host-uds=open', '--oci-seccomp'];

/** The one fix for runsc's registration, wherever it is missing or incomplete. */
function runscRegistration(runsc: string): string {
  const args = RUNSC_ARGS.map((a) => `"${a}"`).join(',');
  return `add to /etc/docker/daemon.json: {"runtimes":{"runsc":{"path":"${runsc}","runtimeArgs":[${args}]}}} then restart dockerd (scripts/start-dockerd.sh does this)`;
}

/** Whether the engine has gVisor's runsc registered as a runtime named `runsc`. */
export function probeRunscRuntime(engine: OciEngine, hostEnv: NodeJS.ProcessEnv = process.env): BackendProbe {
  const env = engineEnvironment(hostEnv);
  const runsc = findExecutable('runsc', env);
  if (!runsc)
    return {
      available: false,
      detail: 'runsc not found',
      fix: 'sudo apt-get install runsc   (or the gVisor apt repository: https://gvisor.dev/docs/user_guide/install/)',
    };
  const version = spawnSync(runsc, ['--version'], { encoding: 'utf8', timeout: PROBE_TIMEOUT_MS });
  const runscVersion = /runsc version (\S+)/.exec(version.stdout)?.[1] ?? 'unknown';
  const facts = ENGINE_FACTS[engine];
  const info = queryEngineSync(engine, ['info', '--format', facts.runtimesFormat], { env, timeout: PROBE_TIMEOUT_MS });
  if (info.status !== 0)
    return { available: false, version: runscVersion, detail: `${engine} does not answer`, fix: engineFix(engine) };
  if (facts.daemonRuntimes && !/"runsc"/.test(info.stdout))
    return {
      available: false,
      version: runscVersion,
      detail: `runsc ${runscVersion} is installed but docker has no runtime named runsc`,
      fix: runscRegistration(runsc),
    };
  // Without --host-uds=open no allowlist cell reaches the gateway's socket.
  if (facts.daemonRuntimes && !info.stdout.includes('--host-uds=open'))
    return {
      available: false,
      version: runscVersion,
      detail: `runsc ${runscVersion} registered with docker without --host-uds=open: allowlist cells cannot reach the gateway`,
      fix: runscRegistration(runsc),
    };
  // Without --oci-seccomp runsc ignores the container's seccomp profile (gVisor's own kernel still has no host keyring).
  if (facts.daemonRuntimes && !info.stdout.includes('--oci-seccomp'))
    return {
      available: true,
      version: runscVersion,
      detail: `runsc ${runscVersion} registered with docker without --oci-seccomp: agentcell's seccomp profile does not apply inside gVisor`,
      fix: runscRegistration(runsc),
    };
  return { available: true, version: runscVersion, detail: `runsc ${runscVersion} registered with ${engine}` };
}
