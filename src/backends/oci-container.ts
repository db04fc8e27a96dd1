/**
 * One cell container as the OCI backend decides it, before it is said to an engine:
 * as podman CLI arguments, or as a Docker Engine API request (docker-api-container.ts).
 * Both say exactly these fields and nothing else, so the two stay equivalent.
 */
export interface OciContainer {
  name: string;
  hostname: string;
  /**
   * `--rm`: the engine removes the container when it exits. Off where the run must read the
   * container's state first (a memory limit's `OOMKilled`); the run removes it then.
   */
  autoRemove: boolean;
  /** `--label`: marks the container as agentcell's cell (see {@link CELL_LABEL}). */
  labels: Record<string, string>;
  /** `--runtime` (gvisor: runsc). */
  runtime?: string;
  tty: boolean;
  /** false only for network = open (the host's network). */
  networkNone: boolean;
  /**
   * Besides `--cap-drop ALL`, no-new-privileges and a read-only image, which every cell gets:
   * agentcell's seccomp profile (a file for the CLI, its text for the API), none (breakglass),
   * or the engine's own where agentcell has no table for the CPU.
   */
  seccomp: { kind: 'agentcell'; path: string; json: string } | { kind: 'unconfined' } | { kind: 'engine' };
  /** `--user UID:GID`. */
  user: string;
  /** Rootless podman: `--userns keep-id:…`. */
  userns?: string;
  /**
   * Rootful podman for a root caller: `--uidmap` and `--gidmap` (CONTAINER:HOST:COUNT each),
   * the cell's ids onto root's subordinate range (uid-shift.ts). Docker has no per-container
   * map (its capabilities never ask for one), so the API request has no such field.
   */
  uidmap?: string[];
  gidmap?: string[];
  /** Mount point and tmpfs options (empty: the engine's). */
  tmpfs: [target: string, options: string][];
  pidsLimit?: number;
  memoryBytes?: number;
  /** `--pidfile`: where the engine CLI writes the host pid of the container's first process (podman). */
  pidFile?: string;
  /** `--cgroup-parent`: a cgroup of agentcell's that holds the memory limit (oci-memory-cgroup.ts). */
  cgroupParent?: string;
  cpus?: number;
  /** `nofile=SOFT:HARD` and the like. */
  ulimits: string[];
  /** `SOURCE:TARGET[:ro]`. */
  binds: string[];
  /** Variables by name: values come from the plan's env, never from the plan's text. */
  env: string[];
  workdir: string;
  entrypoint: string;
  image: string;
  args: string[];
}

/**
 * The label naming the cell a container runs: a container of agentcell's name left by a
 * killed run is removed before the name is taken again only when it carries this label.
 */
export const CELL_LABEL = 'io.agentcell.cell';

/** The container as `ENGINE run` arguments (after the executable). */
export function runArgs(c: OciContainer): string[] {
  const args = ['run', ...(c.autoRemove ? ['--rm'] : []), '-i', '--pull', 'never'];
  if (c.tty) args.push('-t');
  if (c.runtime) args.push('--runtime', c.runtime);
  args.push('--name', c.name, '--hostname', c.hostname);
  for (const [key, value] of Object.entries(c.labels)) args.push('--label', `${key}=${value}`);
  if (c.networkNone) args.push('--network', 'none');
  args.push('--cap-drop', 'ALL', '--security-opt', 'no-new-privileges');
  if (c.seccomp.kind === 'unconfined') args.push('--security-opt', 'seccomp=unconfined');
  if (c.seccomp.kind === 'agentcell') args.push('--security-opt', `seccomp=${c.seccomp.path}`);
  args.push('--read-only');
  if (c.userns) args.push('--userns', c.userns);
  for (const map of c.uidmap ?? []) args.push('--uidmap', map);
  for (const map of c.gidmap ?? []) args.push('--gidmap', map);
  args.push('--user', c.user);
  for (const [target, options] of c.tmpfs) args.push('--tmpfs', options ? `${target}:${options}` : target);
  if (c.pidsLimit !== undefined) args.push('--pids-limit', String(c.pidsLimit));
  if (c.memoryBytes !== undefined) args.push('--memory', String(c.memoryBytes));
  if (c.cgroupParent !== undefined) args.push('--cgroup-parent', c.cgroupParent);
  if (c.pidFile !== undefined) args.push('--pidfile', c.pidFile);
  if (c.cpus !== undefined) args.push('--cpus', String(c.cpus));
  for (const limit of c.ulimits) args.push('--ulimit', limit);
  for (const bind of c.binds) args.push('-v', bind);
  for (const name of c.env) args.push('-e', name);
  args.push('-w', c.workdir);
  // The image's own entrypoint never runs: the cell runs exactly the command asked for.
  args.push('--entrypoint', c.entrypoint, c.image, ...c.args);
  return args;
}
