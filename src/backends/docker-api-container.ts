import type { OciContainer } from './oci-container.js';

/** `POST /containers/create` as the docker CLI sends it for `docker run` with the same flags. */
export interface DockerCreateBody {
  Hostname: string;
  User: string;
  /** Names only in a plan; the run sends `NAME=VALUE` from the plan's env. */
  Env: string[];
  Cmd: string[];
  Entrypoint: string[];
  Image: string;
  Labels: Record<string, string>;
  WorkingDir: string;
  Tty: boolean;
  OpenStdin: true;
  StdinOnce: true;
  AttachStdin: true;
  AttachStdout: true;
  AttachStderr: true;
  HostConfig: {
    AutoRemove: boolean;
    NetworkMode: string;
    CapDrop: string[];
    SecurityOpt: string[];
    ReadonlyRootfs: true;
    Binds: string[];
    Tmpfs: Record<string, string>;
    Runtime?: string;
    UsernsMode?: string;
    PidsLimit?: number;
    Memory?: number;
    CgroupParent?: string;
    NanoCpus?: number;
    Ulimits?: { Name: string; Soft: number; Hard: number }[];
  };
}

/** What a cell sends the Docker Engine API, in order; `--dry-run` prints it. */
export interface DockerApiPlan {
  /** The daemon's unix socket (the one the docker CLI would use: see docker-socket.ts). */
  socket: string;
  /** The container's name, which the requests after create use. */
  name: string;
  /** `POST` this path with {@link create} as the body. */
  createPath: string;
  create: DockerCreateBody;
  /** Then these paths, each `POST`ed in this order: attach (the stdio stream), wait (the exit), start. */
  attachPath: string;
  waitPath: string;
  startPath: string;
  /**
   * Without `AutoRemove`: after the exit, `GET` this for the container's state (its
   * `OOMKilled`, when the exit was a SIGKILL), then `DELETE` {@link removePath}.
   */
  inspectPath?: string;
  removePath?: string;
}

/**
 * The cell's container as API requests: what `docker run --rm -i --pull never …` sends
 * (the CLI is a client of this API), without the CLI's own start-up. Attach and wait come
 * before start, as the CLI orders them, so no output and no exit is missed; waiting for
 * `removed` returns once the container is gone, as `--rm` does. Without auto-removal the
 * wait is for the exit, and the run reads the state and removes the container itself.
 */
export function dockerApiPlan(c: OciContainer, socket: string): DockerApiPlan {
  const hostConfig: DockerCreateBody['HostConfig'] = {
    AutoRemove: c.autoRemove,
    NetworkMode: c.networkNone ? 'none' : 'default',
    CapDrop: ['ALL'],
    SecurityOpt: ['no-new-privileges', ...seccompOption(c.seccomp)],
    ReadonlyRootfs: true,
    Binds: c.binds,
    Tmpfs: Object.fromEntries(c.tmpfs),
  };
  if (c.runtime) hostConfig.Runtime = c.runtime;
  if (c.userns) hostConfig.UsernsMode = c.userns;
  if (c.pidsLimit !== undefined) hostConfig.PidsLimit = c.pidsLimit;
  if (c.memoryBytes !== undefined) hostConfig.Memory = c.memoryBytes;
  if (c.cgroupParent !== undefined) hostConfig.CgroupParent = c.cgroupParent;
  if (c.cpus !== undefined) hostConfig.NanoCpus = Math.round(c.cpus * 1e9);
  if (c.ulimits.length > 0) hostConfig.Ulimits = c.ulimits.map(parseUlimit);
  const path = `/containers/${c.name}`;
  const plan: DockerApiPlan = {
    socket,
    name: c.name,
    createPath: `/containers/create?name=${encodeURIComponent(c.name)}`,
    create: {
      Hostname: c.hostname,
      User: c.user,
      Env: c.env,
      Cmd: c.args,
      Entrypoint: [c.entrypoint],
      Image: c.image,
      Labels: c.labels,
      WorkingDir: c.workdir,
      Tty: c.tty,
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: hostConfig,
    },
    attachPath: `${path}/attach?stream=1&stdin=1&stdout=1&stderr=1`,
    waitPath: `${path}/wait?condition=${c.autoRemove ? 'removed' : 'next-exit'}`,
    startPath: `${path}/start`,
  };
  if (!c.autoRemove) {
    plan.inspectPath = `${path}/json`;
    plan.removePath = `${path}?force=1`;
  }
  return plan;
}

/** The API takes the profile's text where the CLI reads a file. */
function seccompOption(seccomp: OciContainer['seccomp']): string[] {
  if (seccomp.kind === 'unconfined') return ['seccomp=unconfined'];
  return seccomp.kind === 'agentcell' ? [`seccomp=${seccomp.json}`] : [];
}

/** `nofile=1024:2048` (or `nofile=1024`) as the API's ulimit. */
function parseUlimit(limit: string): { Name: string; Soft: number; Hard: number } {
  const [name = '', values = ''] = limit.split('=');
  const [soft = '', hard = soft] = values.split(':');
  return { Name: name, Soft: Number(soft), Hard: Number(hard) };
}
