import type { Server } from 'node:net';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import type { BackendName } from '../_internal/vocabulary.js';
import type { CgroupPlan } from './cgroup-limits.js';
import type { DockerApiPlan } from './docker-api-container.js';
import type { FileStaging } from './staged-files.js';

/** A path hidden in the cell: present, empty and unreadable (mode 0000, read-only). */
export interface MaskSpec {
  target: string;
  kind: 'file' | 'dir';
}

export interface ExtraMount {
  source: string;
  target: string;
  mode: 'ro' | 'rw';
  /** agentcell's own state (the agent's home): a root caller's shifted cell writes it as root does (uid-shift.ts). */
  own?: true;
  /** A directory, though it may not exist yet when the plan is made (an agent's toolchain, installed just before the cell). */
  directory?: true;
}

export interface ResourceLimits {
  timeoutMs?: number;
  pids?: number;
  memoryBytes?: number;
  cpus?: number;
  /**
   * What the cell may write: each of its scratch tmpfs is this size, and no single file it
   * writes grows past it (RLIMIT_FSIZE); the run watches its writable layer for the total.
   */
  diskBytes?: number;
}

/** How the run pipeline talks to a running backend. */
export interface RunControl {
  /** Aborting it kills the cell at once (a bound was passed: see run-disk-watch.ts). */
  stop?: AbortSignal;
  /**
   * A gateway cell on a backend with `listenerHandoff`: called once with the listener the
   * cell's bridge made on the cell's loopback, now held by this process. Returns (or
   * resolves to) whether it was adopted; the bridge waits for the answer, so the command
   * starts only after it. A refused one is closed, and the bridge then exits non-zero, so
   * the command does not run (fail closed). Without it every listener is refused.
   */
  adoptListener?: (listener: Server) => boolean | Promise<boolean>;
}

/**
 * Everything a backend needs to start a cell, fully resolved: backends never read
 * policy files and the policy layer never spawns processes.
 */
export interface CellSpec {
  cell: string;
  /** A directory rootfs may carry the cell's own writable layer over it (bwrap). */
  rootfs: { kind: 'host' } | { kind: 'directory'; path: string; overlay?: { argvPrefix: string[]; merged: string } };
  workspace: {
    path: string;
    mode: 'direct' | 'readonly' | 'overlay';
    /**
     * For overlay: the argv prefix that mounts the layers (bwrap), the merged view to bind,
     * and the command that holds it mounted on the host, where an OCI engine can see it
     * (see host-overlay-mount.ts); the copy driver mounts nothing (no prefix, no host
     * mount: `merged` is a plain directory).
     */
    overlay?: { argvPrefix: string[]; merged: string; hostMount?: string[] };
  };
  masks: MaskSpec[];
  /** Existing workspace paths bound read-only over a writable workspace. */
  readonlyPaths: string[];
  mounts: ExtraMount[];
  /** An empty, writable home at this path. */
  home: string;
  cwd: string;
  argv: string[];
  env: Record<string, string>;
  /** uid/gid inside the cell; 0 only when the policy asks for root. */
  identity: { uid: number; gid: number };
  /** none: loopback only; open: the host's network; gateway: loopback plus the egress bridge. */
  network: 'none' | 'open' | 'gateway';
  /** For network = gateway: what is bound into the cell for the bridge. */
  egress?: CellEgress;
  limits: ResourceLimits;
  /** Install agentcell's seccomp filter (off only in breakglass). */
  seccomp: boolean;
  /** The caller has a terminal: keep the session so job control and Ctrl-C work. */
  tty: boolean;
  /** OCI backends: the cell image, resolved to its digest before the run. */
  image?: { ref: string; digest: string };
}

/** The egress gateway's side of a cell, resolved by the run (see src/egress/cell/proxy-environment.ts). */
export interface CellEgress {
  /** The gateway's unix socket on the host, in a private (0700) directory; made by the run before the cell starts. */
  socketPath: string;
  /** Host paths bound read-only into the cell for the bridge: the socket, the bridge script, node when the host's. */
  binds: { source: string; target: string }[];
  /** Runs in front of the command: starts the relaying bridge in the cell, waits for it, then execs the command. */
  argvPrefix: string[];
  /**
   * The same for a backend with `listenerHandoff`: the bridge makes the cell's proxy listener,
   * hands it to agentcell over the IPC channel (NODE_CHANNEL_FD) and exits; the prelude then
   * closes the channel and execs the command. No bridge process stays in the cell.
   */
  handoffPrefix: string[];
}

/** A descriptor handed to the backend process, shown in --dry-run. */
export interface PlannedFd {
  fd: number;
  purpose: string;
}

/** The exact invocation `run` performs; `--dry-run` prints it. */
export interface BackendPlan {
  backend: BackendName;
  /** The process the run starts (empty when it talks to the engine's API instead: `api`). */
  argv: string[];
  /**
   * bwrap: the run hands `argv.slice(start, end)` (bwrap's options, up to the `--` before
   * the command) to bwrap through descriptor `fd` (`bwrap --args FD`) instead of its
   * command line, which the cell can read as /proc/1/cmdline; `argv` keeps them all for
   * --dry-run.
   */
  argsFd?: { fd: number; start: number; end: number };
  /**
   * An engine with a local daemon: the requests the run sends it instead of `argv`, in the
   * Docker Engine API (the protocol, which docker's daemon and podman's service speak).
   */
  api?: DockerApiPlan;
  /** OCI: the container the run creates, by name (removed by a watchdog if agentcell dies). */
  container?: string;
  /** OCI: where the engine writes the host pid of the container's first process, for a passed bound to kill it at once. */
  pidFile?: string;
  /** The environment the backend process (and so the cell) receives. */
  env: Record<string, string>;
  fds: PlannedFd[];
  /** A gateway cell whose bridge hands its listener over: the descriptor of the IPC channel (node's `'ipc'` stdio). */
  handoffFd?: number;
  /** What the plan cannot enforce on this host, one line each (lowers assurance). */
  gaps: string[];
  /** Copies of small files the run makes before the cell starts and binds instead of their host paths. */
  staging?: FileStaging;
  /**
   * A root caller's shifted cell (uid-shift.ts), made before the run: bwrap, the neutral
   * runtime dir its stage is mounted over; OCI, the private dir holding the cell's stage.
   */
  stageDir?: string;
  /** Cgroups the run creates for pids and memory limits (OCI: memory, as the container's parent), when it has any. */
  cgroups?: CgroupPlan;
  /**
   * OCI: a host command that mounts the workspace overlay before `argv` runs and holds it
   * until the run ends (see host-overlay-mount.ts).
   */
  hostMount?: string[];
}

/** Which bound of `[resources]` ended a run (receipts keep the same names). */
export type LimitHit = 'disk' | 'memory' | 'pids' | 'timeout';

export interface RunOutcome {
  exitCode: number;
  /** The signal that ended the command, if one did. */
  signal?: NodeJS.Signals;
  timedOut: boolean;
  /** Host pid of the backend process, for diagnostics. */
  pid?: number;
  /** The bound that ended the run (invariant 12: say which), and what it was, for the receipt and the user. */
  limitHit?: LimitHit;
  limitDetail?: string;
}

export interface BackendProbe {
  available: boolean;
  version?: string;
  detail: string;
  fix?: string;
}

export interface Backend {
  readonly name: BackendName;
  /** The program whose `--version` the receipt records (bwrap, podman, docker, runsc). */
  readonly tool: string;
  /**
   * Descriptors cross from the cell to agentcell (a host process starts the cell's init): a
   * gateway cell's plan runs CellEgress.handoffPrefix and `run` gives the cell's listener to
   * RunControl.adoptListener. Without it (OCI engines: docker can't pass descriptors, gVisor's
   * sockets are not host sockets) the bridge stays in the cell and relays (argvPrefix).
   */
  readonly listenerHandoff: boolean;
  probe(): BackendProbe;
  /** Pure: reads the spec, changes nothing (a prepared run is immutable). */
  plan(spec: DeepReadonly<CellSpec>): BackendPlan;
  /** Executes `plan` (what `plan(spec)` returned) for `spec`. */
  run(spec: DeepReadonly<CellSpec>, plan: DeepReadonly<BackendPlan>, control?: RunControl): Promise<RunOutcome>;
}
