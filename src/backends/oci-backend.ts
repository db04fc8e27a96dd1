import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentcellError } from '../errors.js';
import { cellHostname } from './cell-hostname.js';
import { findExecutable } from '../_internal/find-executable.js';
import type { Backend, BackendPlan, BackendProbe, CellSpec, MaskSpec, RunControl, RunOutcome } from './backend.js';
import { engineEnvironment, probeEngine, probeRunscRuntime, type OciEngine } from './oci-engine.js';
import { startRunWatchdog } from './run-watchdog.js';
import { superviseProcess } from './supervise-process.js';
import { holdHostMount } from './hold-host-mount.js';
import { dockerApiPlan } from './docker-api-container.js';
import { runDockerApi } from './docker-api-run.js';
import { dockerSocketPath } from './docker-socket.js';
import { runArgs, type OciContainer } from './oci-container.js';
import { queryEngineSync } from './engine-query.js';
import { ociSeccompProfile, serializeOciSeccompProfile } from './oci-seccomp-profile.js';
import { makeDirs } from '../_internal/make-dirs.js';

/** The backends built on an OCI engine: the engine itself, or gVisor's runsc through it. */
export type OciBackendName = 'podman' | 'docker' | 'gvisor';

export interface OciBackendOptions {
  name: OciBackendName;
  engine: OciEngine;
  /** `--runtime` for the engine (gvisor: runsc). */
  runtime?: string;
  /** Where the run keeps the empty, mode-0000 file and dir bound over masked paths. */
  maskDir: string;
  /** Where the run keeps agentcell's seccomp profile for the engine CLI to read. */
  seccompDir: string;
  /** The host environment: where the engine is and how to reach it. */
  hostEnv: NodeJS.ProcessEnv;
  /** agentcell's own uid/gid on the host (the workspace owner, as for bwrap). */
  hostUid: number;
  hostGid: number;
}

const PODMAN_NPROC_CEILING = 32768;
/**
 * Host tasks of a gVisor sandbox (runsc, ptrace platform, measured): about 44 idle, and
 * about 8 more per process in it (50 sleeping processes: 443).
 */
const GVISOR_SANDBOX_TASKS = 64;
const GVISOR_TASKS_PER_PROCESS = 10;
/** Password hashes an image may carry: hidden like the host's are on bwrap (a root cell owns them). */
const IMAGE_SECRETS: MaskSpec[] = [
  { target: '/etc/shadow', kind: 'file' },
  { target: '/etc/gshadow', kind: 'file' },
];

export function createOciBackend(options: OciBackendOptions): Backend {
  return {
    name: options.name,
    tool: options.runtime ?? options.engine,
    probe: () => probeOci(options),
    plan: (spec) => planOci(spec, options),
    run: (spec, plan, control) => runOci(spec, plan, options, control),
  };
}

function probeOci(options: OciBackendOptions): BackendProbe {
  const engine = probeEngine(options.engine, options.hostEnv);
  if (!engine.available || options.runtime !== 'runsc') return engine;
  return probeRunscRuntime(options.engine, options.hostEnv);
}

/**
 * The exact engine invocation for a cell: no network but the gateway's socket, every
 * capability dropped, no-new-privileges, a read-only image with tmpfs scratch dirs and
 * an empty home, the workspace (or its overlay, mounted on the host: see
 * host-overlay-mount.ts) bound at its own path, masks and control-plane paths bound over
 * it. Said as `ENGINE run` argv, or for docker on a local socket as the API requests that
 * command sends (docker-api-container.ts). Values of the cell's variables are in neither:
 * `-e NAME` makes the engine CLI copy them from its own environment, and the API run fills
 * the named `Env` in the same way, from `plan.env`. Reads the host; changes nothing.
 */
export function planOci(spec: CellSpec, options: OciBackendOptions): BackendPlan {
  const { image } = spec;
  if (!image) throw new Error('an OCI cell needs a resolved image');
  const engineEnv = engineEnvironment(options.hostEnv);
  const engine = findExecutable(options.engine, engineEnv) ?? options.engine;
  const gaps: string[] = [];
  // 40: it names the container too (`agentcell-HOST-PID`), which the engines list.
  const hostname = cellHostname(spec.cell, 40);
  const user = cellUser(spec, options, gaps);
  // exec, as on bwrap: build tools and agents run what they write to /tmp and $HOME (engines default to noexec).
  const tmpfs: OciContainer['tmpfs'] = [
    ['/tmp', 'mode=1777,exec'],
    ['/var/tmp', 'mode=1777,exec'],
    ['/run', ''],
  ];
  // Every home disappears; the cell's own is empty, private and the cell user's.
  for (const dir of ['/home', '/root']) if (dir !== spec.home) tmpfs.push([dir, '']);
  // A workspace that is the home (run in $HOME) is the home, as on bwrap: one mount per path.
  // An agent's seeded home is bound there instead (one mount per path: engines refuse two).
  const homeBound = spec.mounts.some((m) => m.target === spec.home);
  if (spec.home !== spec.workspace.path && !homeBound)
    tmpfs.push([checkPath(spec.home), `${homeOptions(user, options)},exec`]);
  // Scratch dirs live in memory: each is at most the disk limit (and counts to the memory limit).
  const { diskBytes } = spec.limits;
  if (diskBytes !== undefined)
    for (const entry of tmpfs) entry[1] = [entry[1], `size=${diskBytes}`].filter(Boolean).join(',');

  const { pids, memoryBytes, cpus } = spec.limits;
  if (options.engine === 'podman' && options.hostUid !== 0) gaps.push(...rootlessLimitGaps(spec, engine, options));

  const binds: string[] = [];
  const bind = (source: string, target: string, mode: 'ro' | 'rw'): void => {
    binds.push(`${checkPath(source)}:${checkPath(target)}${mode === 'ro' ? ':ro' : ''}`);
  };
  const { workspace } = spec;
  if (workspace.overlay) bind(workspace.overlay.merged, workspace.path, 'rw');
  else bind(workspace.path, workspace.path, workspace.mode === 'direct' ? 'rw' : 'ro');
  for (const path of spec.readonlyPaths) bind(path, path, 'ro');
  for (const mount of spec.mounts) bind(mount.source, mount.target, mount.mode);
  for (const mask of [...IMAGE_SECRETS, ...spec.masks])
    bind(join(options.maskDir, `empty-${mask.kind}`), mask.target, 'ro');

  let argv = spec.argv;
  if (spec.network === 'gateway') {
    const { egress } = spec;
    if (!egress) throw new Error('a gateway cell needs its egress wiring');
    for (const { source, target } of egress.binds) bind(source, target, 'ro');
    argv = [...egress.argvPrefix, ...spec.argv];
  }
  const [command, ...rest] = argv;
  if (command === undefined) throw new Error('empty command');
  const container: OciContainer = {
    name: `agentcell-${hostname}-${process.pid}`,
    hostname,
    tty: spec.tty,
    networkNone: spec.network !== 'open',
    seccomp: cellSeccomp(spec, options, gaps),
    user: `${user.uid}:${user.gid}`,
    tmpfs,
    // podman asks runc for ulimits above what this process may grant unless told.
    ulimits: options.engine === 'podman' ? currentUlimits() : [],
    binds,
    env: Object.keys(spec.env).sort(),
    workdir: spec.cwd,
    entrypoint: command,
    image: image.digest,
    args: rest,
  };
  if (options.runtime) container.runtime = options.runtime;
  if (user.userns) container.userns = user.userns;
  if (pids !== undefined && options.runtime === 'runsc') {
    // gVisor's kernel counts the cell's processes (RLIMIT_NPROC, which it enforces for root
    // too); the host cgroup holds gVisor's own threads, several per cell process, so it
    // only bounds the sandbox as a whole.
    container.ulimits.push(`nproc=${pids}:${pids}`);
    container.pidsLimit = GVISOR_SANDBOX_TASKS + pids * GVISOR_TASKS_PER_PROCESS;
  } else if (pids !== undefined) container.pidsLimit = pids;
  if (memoryBytes !== undefined) container.memoryBytes = memoryBytes;
  if (cpus !== undefined) container.cpus = cpus;
  // No file the cell writes grows past the disk limit.
  if (diskBytes !== undefined) container.ulimits.push(`fsize=${diskBytes}:${diskBytes}`);

  // docker's own API when the CLI would reach a local socket: the same requests, without the CLI's start-up.
  const socket = options.engine === 'docker' ? dockerSocketPath(engineEnv) : undefined;
  const plan: BackendPlan = {
    backend: options.name,
    argv: socket ? [] : [engine, ...runArgs(container)],
    env: { ...engineEnv, ...spec.env },
    fds: [],
    gaps,
  };
  if (socket) plan.dockerApi = dockerApiPlan(container, socket);
  if (workspace.overlay?.hostMount) {
    // Rootless podman's containers see the mounts of its own user namespace: mount there.
    const via = options.engine === 'podman' && options.hostUid !== 0 ? [engine, 'unshare'] : [];
    plan.hostMount = [...via, ...workspace.overlay.hostMount];
  }
  return plan;
}

/** agentcell's seccomp profile, named by its content so the plan needs no write. */
function cellSeccomp(spec: CellSpec, options: OciBackendOptions, gaps: string[]): OciContainer['seccomp'] {
  if (!spec.seccomp) return { kind: 'unconfined' };
  const profile = ociSeccompProfile(options.runtime === 'runsc' ? 'kernel' : 'enosys');
  if (!profile) {
    gaps.push(`${options.name}: no agentcell seccomp profile for this CPU architecture (the engine's own applies)`);
    return { kind: 'engine' };
  }
  const { json, fileName } = serializeOciSeccompProfile(profile);
  return { kind: 'agentcell', path: join(options.seccompDir, fileName), json };
}

interface CellUser {
  uid: number;
  gid: number;
  /** Rootless podman: how the user namespace maps the cell user. */
  userns?: string;
}

/**
 * The cell's uid. The workspace belongs to agentcell's host user, so that user's files
 * must stay writable, as on bwrap (where the cell's uid maps onto that user). Rootless
 * podman maps it (`keep-id`). A rootful engine runs the cell as the host user's own uid:
 * when agentcell runs as root that is uid 0 without capabilities (bwrap's cell is that
 * too on the host, under another name); per-container uid maps (podman `--uidmap`) copy
 * and chown the image's layers and fail on this podman, so the plan says so instead.
 */
function cellUser(spec: CellSpec, options: OciBackendOptions, gaps: string[]): CellUser {
  const { uid, gid } = spec.identity;
  const { hostUid, hostGid } = options;
  if (options.engine === 'podman' && hostUid !== 0) {
    // Rootless: podman's user namespace maps container root to the host user.
    return uid === 0 ? { uid, gid } : { uid, gid, userns: `keep-id:uid=${uid},gid=${gid}` };
  }
  if (uid !== 0 && uid !== hostUid)
    gaps.push(
      `${options.name}: the cell runs as uid ${hostUid} (the workspace owner's), not ${uid}: a rootful engine maps no uids per container`,
    );
  const cellUid = uid === 0 ? 0 : hostUid;
  const cellGid = uid === 0 ? 0 : hostGid;
  return { uid: cellUid, gid: cellGid };
}

/**
 * Rootless podman enforces limits only through cgroup v2 controllers delegated to the
 * user; without them it ignores the flags. Asked only when the policy sets limits.
 */
function rootlessLimitGaps(spec: CellSpec, engine: string, options: OciBackendOptions): string[] {
  const asked = (['pids', 'memoryBytes', 'cpus'] as const).filter((k) => spec.limits[k] !== undefined);
  if (asked.length === 0) return [];
  const info = queryEngineSync(engine, ['info', '--format', '{{json .Host.CgroupControllers}}'], {
    env: engineEnvironment(options.hostEnv),
    timeout: 10_000,
  });
  const controllers = info.status === 0 ? info.stdout : '';
  const controller = { pids: 'pids', memoryBytes: 'memory', cpus: 'cpu' } as const;
  const key = { pids: 'pids', memoryBytes: 'memory', cpus: 'cpus' } as const;
  return asked
    .filter((k) => !controllers.includes(`"${controller[k]}"`))
    .map(
      (k) =>
        `resources.${key[k]} not enforced (rootless podman has no delegated ${controller[k]} cgroup controller: needs cgroup v2 and a systemd user session)`,
    );
}

/** tmpfs options that give the home to the cell user (gVisor's tmpfs takes no uid=/gid=). */
function homeOptions({ uid, gid }: CellUser, options: OciBackendOptions): string {
  if (uid === 0) return 'mode=0700';
  if (options.runtime === 'runsc') return 'mode=1777';
  return options.engine === 'podman' ? 'mode=0700,U' : `mode=0700,uid=${uid},gid=${gid}`;
}

/**
 * `--ulimit` values runc can set: this process's open-file limits, and its process limit
 * capped at 32768, where podman 4's conmon (runc's parent) is seen to stand; podman's
 * own defaults ask for more and runc, without CAP_SYS_RESOURCE, fails to raise them.
 */
function currentUlimits(): string[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return [];
  }
  const limits: string[] = [];
  for (const [label, name, cap] of [
    ['Max open files', 'nofile', Infinity],
    ['Max processes', 'nproc', PODMAN_NPROC_CEILING],
  ] as const) {
    const match = new RegExp(`^${label}\\s+(\\S+)\\s+(\\S+)`, 'm').exec(text);
    if (!match) continue;
    const value = (v: string | undefined): number => Math.min(v === 'unlimited' ? Infinity : Number(v), cap);
    const [soft, hard] = [value(match[1]), value(match[2])];
    if (Number.isFinite(soft) && Number.isFinite(hard)) limits.push(`${name}=${soft}:${hard}`);
  }
  return limits;
}

/** `-v SOURCE:TARGET[:ro]` has no quoting: a path with `:` or `,` can't be said. */
function checkPath(path: string): string {
  if (/[:,\n]/.test(path))
    throw new AgentcellError(
      'WORKSPACE_INVALID',
      `the path ${JSON.stringify(path)} contains ':' or ',', which OCI engines cannot bind; rename it or use --backend bwrap`,
    );
  return path;
}

async function runOci(
  spec: CellSpec,
  plan: BackendPlan,
  options: OciBackendOptions,
  control: RunControl = {},
): Promise<RunOutcome> {
  makeMaskSources(options.maskDir);
  if (!plan.dockerApi && spec.seccomp) writeSeccompProfile(options);
  // The container's user is not agentcell's: the socket's private directory is the guard
  // on the host (0700), and the cell binds the socket file itself.
  if (spec.egress) chmodSync(spec.egress.socketPath, 0o666);
  const env = engineEnvironment(options.hostEnv);
  // The container outlives a SIGKILLed agentcell (the engine runs it, not us): removed then by a watchdog.
  const nameAt = plan.argv.indexOf('--name');
  const name = plan.dockerApi?.name ?? (nameAt >= 0 ? plan.argv[nameAt + 1] : undefined);
  // podman's rm --force stops the container first (10 s of grace by default): a dead run's cell goes at once.
  const rm = [options.engine, 'rm', '--force', ...(options.engine === 'podman' ? ['--time', '0'] : [])];
  const watchdog = name !== undefined ? startRunWatchdog([[...rm, name]], env) : undefined;
  // Awaited here, so the run's own bookkeeping (receipt key, git state) goes on while the host mounts.
  const mount = plan.hostMount && (await holdHostMount(plan.hostMount, env));
  try {
    if (plan.dockerApi)
      return await runDockerApi(plan.dockerApi, {
        tty: spec.tty,
        timeoutMs: spec.limits.timeoutMs,
        env: plan.env,
        stop: control.stop,
      });
    const [executable, ...args] = plan.argv;
    if (executable === undefined) throw new Error('empty OCI plan');
    const child = spawn(executable, args, { env: plan.env, stdio: 'inherit', detached: !spec.tty });
    // A bound passed: the container stops now (the CLI's own death would leave it running a while).
    const killContainer = (): void => {
      if (name !== undefined)
        spawn(executable, ['kill', '--signal', 'KILL', name], { env, stdio: 'ignore' }).on('error', () => undefined);
    };
    control.stop?.addEventListener('abort', killContainer, { once: true });
    // The engine CLI forwards the signals it gets to the container (its sig-proxy).
    const outcome = await superviseProcess(child, {
      tty: spec.tty,
      timeoutMs: spec.limits.timeoutMs,
      commandPid: () => child.pid,
      stop: control.stop,
    });
    // A killed CLI leaves the container running: remove it by name.
    if (outcome.timedOut || outcome.signal !== undefined) removeContainer(executable, plan.argv, env);
    return outcome;
  } finally {
    watchdog?.disarm();
    await mount?.release();
  }
}

function removeContainer(executable: string, argv: string[], env: Record<string, string>): void {
  const name = argv[argv.indexOf('--name') + 1];
  if (name) spawnSync(executable, ['rm', '--force', name], { env, stdio: 'ignore', timeout: 30_000 });
}

/** The profile the plan names, written once per content (the name is its hash), atomically. */
function writeSeccompProfile(options: OciBackendOptions): void {
  const dir = options.seccompDir;
  const profile = ociSeccompProfile(options.runtime === 'runsc' ? 'kernel' : 'enosys');
  if (!profile) return;
  const { json, fileName } = serializeOciSeccompProfile(profile);
  const path = join(dir, fileName);
  if (existsSync(path)) return;
  makeDirs(dir);
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, json, { mode: 0o644 });
  renameSync(temp, path);
}

function makeMaskSources(dir: string): void {
  const emptyDir = join(dir, 'empty-dir');
  const emptyFile = join(dir, 'empty-file');
  if (!existsSync(emptyDir)) {
    makeDirs(emptyDir);
    chmodSync(emptyDir, 0);
  }
  if (!existsSync(emptyFile)) {
    writeFileSync(emptyFile, '', { mode: 0 });
    chmodSync(emptyFile, 0);
  }
}
