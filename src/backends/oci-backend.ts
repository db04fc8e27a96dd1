import { spawn, spawnSync } from 'node:child_process';
import { onAbort } from '../_internal/on-abort.js';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { userInfo } from 'node:os';
import { subordinateIds } from './subordinate-ids.js';
import { withProbeFix } from './probe-fix.js';
import { AgentcellError } from '../errors.js';
import { cellHostname } from './cell-hostname.js';
import { findExecutable } from '../_internal/find-executable.js';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import type { Backend, BackendPlan, BackendProbe, CellSpec, MaskSpec, RunControl, RunOutcome } from './backend.js';
import { engineEnvironment, probeEngine, probeRunscRuntime } from './oci-engine.js';
import { ociCapabilities, type OciBackendName, type OciCapabilities } from './oci-capabilities.js';
import { memoryCgroupHit, planOciMemoryCgroup } from './oci-memory-cgroup.js';
import { createCgroups, memoryLimitHit, removeCgroups } from './cgroup-limits.js';
import { startRunWatchdog } from './run-watchdog.js';
import { superviseProcess } from './supervise-process.js';
import { holdHostMount } from './hold-host-mount.js';
import { dockerApiPlan } from './docker-api-container.js';
import { runDockerApi } from './docker-api-run.js';
import { dockerSocketPath } from './docker-socket.js';
import { hostRootGap } from './host-uid.js';
import {
  detachOrphanStages,
  hostStagePrefix,
  planUidShift,
  shiftedMountSource,
  shiftedWrapper,
  stagedPath,
  type UidShift,
} from './uid-shift.js';
import { makeNeutralDir, neutralRuntimeDir } from '../_internal/neutral-dir.js';
import { CELL_LABEL, runArgs, type OciContainer } from './oci-container.js';
import { queryEngineSync } from './engine-query.js';
import { ociSeccompProfile, serializeOciSeccompProfile } from './oci-seccomp-profile.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { HOST_MOUNT_READY, HOST_MOUNT_RELEASE } from '../_internal/held-mount-protocol.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { makeStagedFiles, removeStagedFiles, stageSmallFiles } from './staged-files.js';
import { killByPidFile } from './kill-by-pid-file.js';

export type { OciBackendName } from './oci-capabilities.js';

export interface OciBackendOptions {
  name: OciBackendName;
  /** What the engine can and must be told (default: {@link ociCapabilities} for `name` and `hostUid`). */
  capabilities?: OciCapabilities;
  /** Where the run keeps the empty, mode-0000 file and dir bound over masked paths. */
  maskDir: string;
  /** Where the run keeps agentcell's seccomp profile for the engine CLI to read. */
  seccompDir: string;
  /** Where the engine CLI writes the pid of a run's container (never bound into a cell). */
  pidDir: string;
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
  const resolved = resolve(options);
  return {
    name: options.name,
    tool: resolved.caps.runtime ?? resolved.caps.engine,
    // docker's client can't pass a descriptor to the container, and gVisor's sockets are its own kernel's.
    listenerHandoff: false,
    probe: () => probeOci(resolved),
    plan: (spec) => planWith(spec, resolved),
    run: (spec, plan, control) => runOci(spec, plan, resolved, control),
  };
}

interface ResolvedOptions extends OciBackendOptions {
  caps: OciCapabilities;
}

function resolve(options: OciBackendOptions): ResolvedOptions {
  return { ...options, caps: options.capabilities ?? ociCapabilities(options.name, options.hostUid, options.hostEnv) };
}

/**
 * The engine answers and, where the backend runs through a runtime of its, has that runtime;
 * a rootless engine's user has the subordinate ids it maps the cell from. Read-only: what
 * `doctor` reports and what a failing run names as the fix.
 */
function probeOci({ caps, hostEnv, hostUid }: ResolvedOptions): BackendProbe {
  if (caps.rootless) {
    const user = userInfo().username;
    const ids = subordinateIds(user, hostUid);
    if (!ids.uids || !ids.gids)
      return {
        available: false,
        detail: `rootless ${caps.engine} needs subordinate ids and ${user} has none`,
        fix: `sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${user} && ${caps.engine} system migrate`,
      };
    const engine = probeEngine(caps.engine, hostEnv);
    return { ...engine, detail: `${engine.detail}; rootless, ids ${ids.uids}` };
  }
  const engine = probeEngine(caps.engine, hostEnv);
  if (!engine.available || caps.runtime === undefined) return engine;
  return probeRunscRuntime(caps.engine, hostEnv);
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
export function planOci(spec: DeepReadonly<CellSpec>, options: OciBackendOptions): BackendPlan {
  return planWith(spec, resolve(options));
}

function planWith(spec: DeepReadonly<CellSpec>, options: ResolvedOptions): BackendPlan {
  const { caps } = options;
  const { image } = spec;
  if (!image) throw new Error('an OCI cell needs a resolved image');
  const engineEnv = engineEnvironment(options.hostEnv);
  const engine = findExecutable(caps.engine, engineEnv) ?? caps.engine;
  const gaps: string[] = [];
  // 40: it names the container too (`agentcell-HOST-PID`), which the engines list.
  const hostname = cellHostname(spec.cell, 40);
  const user = cellUser(spec, options, gaps);
  const { shift } = user;
  // A root caller's shifted cell binds the idmapped stage instead of the host paths (uid-shift.ts).
  const src = (path: string): string => (shift ? stagedPath(shift, path) : path);
  // exec, as on bwrap: build tools and agents run what they write to /tmp and $HOME (engines default to noexec).
  const tmpfs: OciContainer['tmpfs'] = [
    ['/tmp', 'mode=1777,exec'],
    ['/var/tmp', 'mode=1777,exec'],
    ['/run', ''],
  ];
  // Every home disappears; the cell's own is empty, private and the cell user's. Empty means
  // empty: not a copy of the image's /root (whose .bashrc a canary takes for the host's).
  const empty = options.caps.tmpfsCopiesUp ? 'notmpcopyup' : '';
  for (const dir of ['/home', '/root']) if (dir !== spec.home) tmpfs.push([dir, empty]);
  // A workspace that is the home (run in $HOME) is the home, as on bwrap: one mount per path.
  // An agent's seeded home is bound there instead (one mount per path: engines refuse two).
  const homeBound = spec.mounts.some((m) => m.target === spec.home);
  if (spec.home !== spec.workspace.path && !homeBound)
    tmpfs.push([checkPath(spec.home), [homeOptions(user, options), 'exec', empty].filter(Boolean).join(',')]);
  // Scratch dirs live in memory: each is at most the disk limit (and counts to the memory limit).
  const { diskBytes } = spec.limits;
  if (diskBytes !== undefined)
    for (const entry of tmpfs) entry[1] = [entry[1], `size=${diskBytes}`].filter(Boolean).join(',');

  const { pids, memoryBytes, cpus } = spec.limits;
  if (caps.rootless) gaps.push(...rootlessLimitGaps(spec, engine, options));

  const binds: string[] = [];
  const bind = (source: string, target: string, mode: 'ro' | 'rw'): void => {
    binds.push(`${checkPath(source)}:${checkPath(target)}${mode === 'ro' ? ':ro' : ''}`);
  };
  const { workspace } = spec;
  // A held overlay is mounted at its own path, over the staged layers; the copy driver's is a plain dir.
  if (workspace.overlay)
    bind(workspace.overlay.hostMount ? workspace.overlay.merged : src(workspace.overlay.merged), workspace.path, 'rw');
  else bind(src(workspace.path), workspace.path, workspace.mode === 'direct' ? 'rw' : 'ro');
  for (const path of spec.readonlyPaths) bind(src(path), path, 'ro');
  // Small files come as copies on /dev/shm, so mountinfo shows no host path of agentcell's (staged-files.ts).
  const staged = stageSmallFiles(spec);
  if (staged.gap) gaps.push(staged.gap);
  for (const mount of staged.binds.slice(0, spec.mounts.length))
    bind(shift ? shiftedMountSource(shift, mount) : mount.source, mount.target, mount.mode);
  // Masks stay root's mode-0000 files, whoever the cell is.
  for (const mask of [...IMAGE_SECRETS, ...spec.masks])
    bind(join(options.maskDir, `empty-${mask.kind}`), mask.target, 'ro');

  let argv = spec.argv;
  if (spec.network === 'gateway') {
    const { egress } = spec;
    if (!egress) throw new Error('a gateway cell needs its egress wiring');
    for (const { source, target } of staged.binds.slice(spec.mounts.length)) bind(src(source), target, 'ro');
    argv = [...egress.argvPrefix, ...spec.argv];
  }
  const [command, ...rest] = argv;
  if (command === undefined) throw new Error('empty command');
  // The engine's memory kill is read from the container's state, so the run removes it (see OciCapabilities.oomReport).
  const readsState = memoryBytes !== undefined && caps.oomReport === 'container-state';
  const container: OciContainer = {
    name: `agentcell-${hostname}-${process.pid}`,
    hostname,
    autoRemove: !readsState,
    labels: { [CELL_LABEL]: spec.cell },
    tty: spec.tty,
    networkNone: spec.network !== 'open',
    seccomp: cellSeccomp(spec, options, gaps),
    user: `${user.uid}:${user.gid}`,
    tmpfs,
    ulimits: caps.explicitUlimits ? currentUlimits() : [],
    binds,
    env: Object.keys(spec.env).sort(),
    workdir: spec.cwd,
    entrypoint: command,
    image: image.digest,
    args: rest,
  };
  if (caps.runtime) container.runtime = caps.runtime;
  if (user.userns) container.userns = user.userns;
  if (user.uidmap) container.uidmap = user.uidmap;
  if (user.gidmap) container.gidmap = user.gidmap;
  if (pids !== undefined && caps.pidsLimit === 'sandbox-nproc') {
    // gVisor's kernel counts the cell's processes (RLIMIT_NPROC, which it enforces for root
    // too); the host cgroup holds gVisor's own threads, several per cell process, so it
    // only bounds the sandbox as a whole.
    container.ulimits.push(`nproc=${pids}:${pids}`);
    container.pidsLimit = GVISOR_SANDBOX_TASKS + pids * GVISOR_TASKS_PER_PROCESS;
  } else if (pids !== undefined) container.pidsLimit = pids;
  // The memory limit on a cgroup of agentcell's holding the container, where that is how a kill is learned.
  const memoryCgroup =
    memoryBytes !== undefined && caps.oomReport === 'parent-cgroup'
      ? planOciMemoryCgroup(`${hostname}-${process.pid}`, memoryBytes)
      : undefined;
  if (memoryCgroup) container.cgroupParent = memoryCgroup.parent;
  else if (memoryBytes !== undefined) container.memoryBytes = memoryBytes;
  if (cpus !== undefined) container.cpus = cpus;
  if (caps.pidFile) container.pidFile = join(options.pidDir, `${container.name}.pid`);
  // No file the cell writes grows past the disk limit.
  if (diskBytes !== undefined) container.ulimits.push(`fsize=${diskBytes}:${diskBytes}`);

  // The engine's own API when the CLI would reach a local socket: the same requests, without the CLI's start-up.
  const socket = caps.localApi ? dockerSocketPath(engineEnv) : undefined;
  const plan: BackendPlan = {
    backend: options.name,
    argv: socket ? [] : [engine, ...runArgs(container)],
    env: { ...engineEnv, ...spec.env },
    fds: [],
    gaps,
    container: container.name,
  };
  if (container.pidFile) plan.pidFile = container.pidFile;
  if (socket) plan.api = dockerApiPlan(container, socket);
  if (memoryCgroup) plan.cgroups = memoryCgroup.cgroups;
  if (staged.staging) plan.staging = staged.staging;
  if (shift) {
    // Held as the overlay is: host root stages the idmapped sources, then mounts the overlay over them.
    const { overlay } = workspace;
    const hold = overlay?.hostMount
      ? [...shiftedWrapper(shift, overlay.hostMount), overlay.merged]
      : ['/bin/sh', '-c', PLAIN_HOLD];
    plan.hostMount = [...hostStagePrefix(shift, overlay?.hostMount ? [overlay.merged] : []), ...hold];
    plan.stageDir = dirname(shift.stage);
  } else if (workspace.overlay?.hostMount) {
    // A rootless engine's containers see the mounts of its own user namespace: mount there.
    const via = caps.rootless ? [engine, 'unshare'] : [];
    plan.hostMount = [...via, ...workspace.overlay.hostMount];
  }
  return plan;
}

/** agentcell's seccomp profile, named by its content so the plan needs no write. */
function cellSeccomp(spec: DeepReadonly<CellSpec>, options: ResolvedOptions, gaps: string[]): OciContainer['seccomp'] {
  if (!spec.seccomp) return { kind: 'unconfined' };
  const profile = ociSeccompProfile(options.caps.seccompClone3);
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
  /** A rootless engine: how the user namespace maps the cell user. */
  userns?: string;
  /** Rootful podman, root caller: the container's own user namespace on root's subordinate ids. */
  uidmap?: string[];
  gidmap?: string[];
  /** A root caller's cell off host uid 0: its binds come from this idmapped stage. */
  shift?: UidShift;
}

/** A held mount with nothing to mount but the stage (no overlay workspace): prints the word, exits 0 once released. */
const PLAIN_HOLD = `echo ${HOST_MOUNT_READY}; read -r line && [ "$line" = ${HOST_MOUNT_RELEASE} ]`;

/**
 * The cell's uid. The workspace belongs to agentcell's host user, so that user's files
 * must stay writable, as on bwrap (where the cell's uid maps onto that user). Rootless
 * podman maps it (`keep-id`). A rootful engine started by an ordinary user runs the cell as
 * that user's uid. A root caller's cell runs on root's subordinate ids instead (DESIGN.md
 * invariant 10), its binds taken from an idmapped stage on which root's files are that uid's
 * (uid-shift.ts): on podman in a user namespace of its own (`--uidmap`), where the cell user
 * (or with `--root`, the cell's root) is the range's first id; on docker and gVisor, which
 * have no per-container user namespace, the default cell user *is* that host uid, and a
 * `--root` cell stays host uid 0 without capabilities, labeled. Where the stage can't be
 * made (no range for root, …) the cell is host uid 0, labeled with the reason, as on bwrap.
 */
function cellUser(spec: DeepReadonly<CellSpec>, options: ResolvedOptions, gaps: string[]): CellUser {
  const { uid, gid } = spec.identity;
  const { hostUid, hostGid, caps } = options;
  if (caps.rootless) {
    // Rootless: podman's user namespace maps container root to the host user.
    return uid === 0 ? { uid, gid } : { uid, gid, userns: `keep-id:uid=${uid},gid=${gid}` };
  }
  if (hostUid === 0) {
    const shifted = shiftedCellUser(spec, options);
    if ('uid' in shifted) return shifted;
    gaps.push(...hostRootGap(0), shifted.none);
    return { uid: 0, gid: 0 };
  }
  if (uid !== 0 && uid !== hostUid)
    gaps.push(
      `${options.name}: the cell runs as uid ${hostUid} (the workspace owner's), not ${uid}: a rootful engine maps no uids per container`,
    );
  const cellUid = uid === 0 ? 0 : hostUid;
  const cellGid = uid === 0 ? 0 : hostGid;
  // A rootful engine maps no uids: the cell's uid 0 is the host's (gVisor's gofer too writes as it).
  gaps.push(...hostRootGap(cellUid));
  return { uid: cellUid, gid: cellGid };
}

/** A root caller's cell on root's subordinate ids, or the line saying why it stays host uid 0. */
function shiftedCellUser(spec: DeepReadonly<CellSpec>, options: ResolvedOptions): CellUser | { none: string } {
  const { uid, gid } = spec.identity;
  if (uid === 0 && !options.caps.perContainerUidMap)
    return {
      none: `${options.name}: a --root cell is host uid 0 without capabilities: docker has no per-container user namespace (userns-remap is daemon-wide); --backend podman or bwrap runs it as root's subordinate uid`,
    };
  // One stage per cell (a cell runs once at a time): a killed run's is detached by the next.
  const key = createHash('sha256').update(`${spec.workspace.path}\0${spec.cell}`).digest('hex').slice(0, 16);
  // The cell's layers are the OCI plan's own: a directory rootfs is bwrap's.
  const planned = planUidShift({ ...spec, rootfs: { kind: 'host' } }, (neutral) => join(`${neutral}-oci`, key));
  if ('none' in planned) return { none: `no unprivileged host uid for the cell: ${planned.none}` };
  const { uid: base, count } = planned;
  if (!options.caps.perContainerUidMap) return { uid: base, gid: base, shift: planned };
  if (uid >= count - 1 || gid >= count - 1)
    return {
      none: `no unprivileged host uid for the cell: its ids ${uid}:${gid} are outside root's ${count} subordinate ids`,
    };
  return { uid, gid, uidmap: firstIdAt(uid, base, count), gidmap: firstIdAt(gid, base, count), shift: planned };
}

/** `--uidmap`s putting `id` on the range's first host id (the stage's owner of root's files), the rest after it. */
function firstIdAt(id: number, base: number, count: number): string[] {
  if (id === 0) return [`0:${base}:${count}`];
  return [`${id}:${base}:1`, `0:${base + 1}:${id}`, `${id + 1}:${base + id + 1}:${count - id - 1}`];
}

/**
 * Rootless podman enforces limits only through cgroup v2 controllers delegated to the
 * user; without them it ignores the flags. Asked only when the policy sets limits.
 */
function rootlessLimitGaps(spec: DeepReadonly<CellSpec>, engine: string, options: ResolvedOptions): string[] {
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
function homeOptions({ uid, gid }: CellUser, options: ResolvedOptions): string {
  if (uid === 0) return 'mode=0700';
  switch (options.caps.homeOwner) {
    case 'world-sticky':
      return 'mode=1777';
    case 'chown-option':
      return 'mode=0700,U';
    case 'uid-option':
      return `mode=0700,uid=${uid},gid=${gid}`;
  }
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
  spec: DeepReadonly<CellSpec>,
  plan: DeepReadonly<BackendPlan>,
  options: ResolvedOptions,
  control: RunControl = {},
): Promise<RunOutcome> {
  const { caps } = options;
  makeMaskSources(options.maskDir);
  if (!plan.api && spec.seccomp) writeSeccompProfile(options);
  // The container's user is not agentcell's: the socket's private directory is the guard
  // on the host (0700), and the cell binds the socket file itself.
  if (spec.egress) chmodSync(spec.egress.socketPath, 0o666);
  const env = engineEnvironment(options.hostEnv);
  const name = plan.container;
  // The container outlives a SIGKILLed agentcell (the engine runs it, not us): removed then by a watchdog.
  const watchdog =
    name !== undefined
      ? startRunWatchdog([[caps.engine, 'rm', '--force', ...caps.forceRemoveArgs, name]], env)
      : undefined;
  if (plan.cgroups) createCgroups(plan.cgroups);
  if (plan.pidFile) makeDirs(dirname(plan.pidFile), 0o700);
  try {
    if (plan.staging) makeStagedFiles(plan.staging);
    if (plan.stageDir) {
      // The stage's parent, and the runtime dir it clones (uid-shift.ts): root's, 0700.
      makeNeutralDir(plan.stageDir);
      detachOrphanStages(plan.stageDir);
      const neutral = neutralRuntimeDir();
      if (neutral) makeNeutralDir(neutral);
    }
    // Awaited here, so the run's own bookkeeping (receipt key, git state) goes on while the host mounts.
    const mount = plan.hostMount && (await holdHostMount(plan.hostMount, env));
    try {
      if (plan.api)
        return await runDockerApi(plan.api, {
          tty: spec.tty,
          timeoutMs: spec.limits.timeoutMs,
          env: plan.env,
          stop: control.stop,
          memoryBytes: spec.limits.memoryBytes,
        }).catch((error: unknown) => {
          throw withProbeFix(error, () => probeOci(options));
        });
      let outcome = await runEngineCli(spec, plan, env, control, caps);
      // The name was taken by a container a killed agentcell left: removed if it is a cell's, then run again.
      if (outcome.exitCode === ENGINE_ERROR_EXIT && !outcome.timedOut && removeLeftover(plan, spec.cell, env))
        outcome = await runEngineCli(spec, plan, env, control, caps);
      return outcome;
    } finally {
      await mount?.release();
    }
  } finally {
    watchdog?.disarm();
    if (plan.cgroups) await removeCgroups(plan.cgroups);
    if (plan.staging) removeStagedFiles(plan.staging);
    if (plan.pidFile) rmSync(plan.pidFile, { force: true });
  }
}

/** What `podman run` / `docker run` exit with when the engine itself failed (nothing ran). */
const ENGINE_ERROR_EXIT = 125;
/** 128 + SIGKILL: how the kernel's OOM killer ends a process. */
const SIGKILL_EXIT = 137;

/** One `ENGINE run` of the plan's argv, supervised; the container is gone when it returns. */
async function runEngineCli(
  spec: DeepReadonly<CellSpec>,
  plan: DeepReadonly<BackendPlan>,
  env: Record<string, string>,
  control: RunControl,
  caps: Pick<OciCapabilities, 'forceRemoveArgs' | 'rootless'>,
): Promise<RunOutcome> {
  const { forceRemoveArgs } = caps;
  const [executable, ...args] = plan.argv;
  if (executable === undefined) throw new Error('empty OCI plan');
  const name = plan.container;
  const child = spawn(executable, args, { env: plan.env, stdio: 'inherit', detached: !spec.tty });
  // A bound passed: the container stops now (the CLI's own death would leave it running a while),
  // by its pid where the engine wrote it (at once), and through the engine.
  const killContainer = (): void => {
    if (plan.pidFile !== undefined) killByPidFile(plan.pidFile);
    if (name !== undefined)
      spawn(executable, ['kill', '--signal', 'KILL', name], { env, stdio: 'ignore' }).on('error', () => undefined);
  };
  const stopListening = onAbort(control.stop, killContainer);
  // The engine CLI forwards the signals it gets to the container (its sig-proxy).
  const outcome = await superviseProcess(child, {
    tty: spec.tty,
    timeoutMs: spec.limits.timeoutMs,
    commandPid: () => child.pid,
    stop: control.stop,
  });
  stopListening();
  const { memoryBytes } = spec.limits;
  if (outcome.timedOut || outcome.signal !== undefined) {
    // A killed CLI leaves the container running, or (rootless podman) a process of its still
    // creating it: end the CLI's whole process group first, then remove the container by name.
    if (!spec.tty && child.pid !== undefined) killGroup(child.pid);
    if (name !== undefined) removeContainer(executable, name, env, forceRemoveArgs);
    return outcome;
  }
  const hit =
    memoryBytes !== undefined &&
    outcome.exitCode === SIGKILL_EXIT &&
    (plan.cgroups
      ? memoryCgroupHit(plan.cgroups, outcome.exitCode)
      : name !== undefined && oomKilled(executable, name, env));
  // Removed now when not auto-removed (its state was to be read), and made sure of when the
  // CLI may have left it: a status of 128+N (a signal ended the CLI or the command), a stopped
  // run, or rootless podman on a terminal, whose inner `run` can outlive the CLI a signal ended
  // (session stop) and keep the cell running.
  const mayBeLeft = outcome.exitCode > 128 || control.stop?.aborted === true || (caps.rootless && spec.tty);
  if (name !== undefined && (mayBeLeft || !plan.argv.includes('--rm')))
    removeContainer(executable, name, env, forceRemoveArgs);
  return hit && memoryBytes !== undefined ? { ...outcome, ...memoryLimitHit(memoryBytes) } : outcome;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
}

/** The container's `State.OOMKilled`, read before it is removed. */
function oomKilled(executable: string, name: string, env: Record<string, string>): boolean {
  const inspect = spawnSync(executable, ['container', 'inspect', '--format', '{{.State.OOMKilled}}', name], {
    env,
    encoding: 'utf8',
    timeout: 30_000,
  });
  return inspect.status === 0 && inspect.stdout.trim() === 'true';
}

/**
 * Removes the container by name and checks it is gone: a removal that races the engine's
 * own creation (a CLI killed while creating) can find it half made, so it is tried again.
 */
function removeContainer(
  executable: string,
  name: string,
  env: Record<string, string>,
  forceRemoveArgs: readonly string[] = [],
): void {
  for (let attempt = 0; attempt < 3; attempt++) {
    spawnSync(executable, ['rm', '--force', ...forceRemoveArgs, name], { env, stdio: 'ignore', timeout: 30_000 });
    const exists = spawnSync(executable, ['container', 'inspect', '--format', '{{.Id}}', name], {
      env,
      stdio: 'ignore',
      timeout: 30_000,
    });
    if (exists.status !== 0) return;
  }
}

/** A container holding the plan's name that agentcell made for the same cell (its label says so), removed. */
function removeLeftover(plan: DeepReadonly<BackendPlan>, cell: string, env: Record<string, string>): boolean {
  const [executable] = plan.argv;
  const name = plan.container;
  if (executable === undefined || name === undefined) return false;
  const inspect = spawnSync(
    executable,
    ['container', 'inspect', '--format', `{{index .Config.Labels "${CELL_LABEL}"}}`, name],
    { env, encoding: 'utf8', timeout: 30_000 },
  );
  if (inspect.status !== 0 || inspect.stdout.trim() !== cell) return false;
  process.stderr.write(
    `agentcell: removed ${name}, a container of cell ${cell} left by an earlier run; running again\n`,
  );
  removeContainer(executable, name, env);
  return true;
}

/** The profile the plan names, written once per content (the name is its hash), atomically. */
function writeSeccompProfile(options: ResolvedOptions): void {
  const dir = options.seccompDir;
  const profile = ociSeccompProfile(options.caps.seccompClone3);
  if (!profile) return;
  const { json, fileName } = serializeOciSeccompProfile(profile);
  const path = join(dir, fileName);
  if (existsSync(path)) return;
  makeDirs(dir);
  writeFileAtomic(path, json, 0o644);
}

/** The empty dir and file bound over masked paths; two runs may make them at once. */
function makeMaskSources(dir: string): void {
  const emptyDir = join(dir, 'empty-dir');
  const emptyFile = join(dir, 'empty-file');
  makeDirs(dir, 0o700);
  if (!existsSync(emptyDir)) {
    makeDirs(emptyDir);
    chmodSync(emptyDir, 0);
  }
  if (!existsSync(emptyFile)) writeFileAtomic(emptyFile, '', 0);
}
