import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OciEngine } from './oci-engine.js';

/** The backends built on an OCI engine: the engine itself, or gVisor's runsc through docker. */
export const OCI_BACKENDS = ['podman', 'docker', 'gvisor'] as const;
export type OciBackendName = (typeof OCI_BACKENDS)[number];

/**
 * What differs between the OCI backends, said once per backend: the plan and the run ask a
 * capability here, never the engine's name. Each flag says what the engine does, so a new
 * engine (or a new podman) is a new record, not new branches.
 */
export interface OciCapabilities {
  /** The engine CLI the backend drives (and whose store holds the image). */
  engine: OciEngine;
  /** `--runtime` the engine starts the container with (gVisor: runsc); also the program the receipt versions. */
  runtime?: 'runsc';
  /** The engine has a daemon answering the Docker Engine API: a local socket is used instead of the CLI. */
  localApi: boolean;
  /** How a run finds the image's digest cheaply: the daemon's API, or podman's store name list (podman-digest-cache.ts). */
  digestLookup: 'daemon-api' | 'podman-store-cache';
  /** The engine asks runc for ulimits above this process's unless told (podman 4): the plan passes ours. */
  explicitUlimits: boolean;
  /** `clone3` in agentcell's seccomp profile: ENOSYS (runc, crun) or left to the sandbox's kernel (gVisor). */
  seccompClone3: 'enosys' | 'kernel';
  /**
   * Where `[resources] pids` is counted: the container's cgroup, or gVisor's kernel
   * (RLIMIT_NPROC), the host cgroup then bounding the sandbox's own threads as a whole.
   */
  pidsLimit: 'cgroup' | 'sandbox-nproc';
  /**
   * `--tmpfs` starts with a copy of what the image has at that path (podman's default,
   * `tmpcopyup`): a home would then hold the image's dotfiles, so homes say `notmpcopyup`.
   */
  tmpfsCopiesUp: boolean;
  /** How the cell's home tmpfs becomes the cell user's: podman's `U`, `uid=`/`gid=`, or mode 1777 (gVisor's tmpfs takes neither). */
  homeOwner: 'chown-option' | 'uid-option' | 'world-sticky';
  /**
   * The engine runs as agentcell's own non-root user (rootless podman): the cell user is
   * mapped with `--userns keep-id`, host mounts are made in the engine's user namespace
   * (`podman unshare`), and limits hold only where cgroup controllers are delegated.
   */
  rootless: boolean;
  /**
   * The engine gives a container its own user namespace on request (rootful podman's
   * `--uidmap`): a root caller's cell, root included, then runs on root's subordinate ids.
   * Without it (docker: `userns-remap` is daemon-wide) only a non-root cell user can be moved
   * off host uid 0, by running as a subordinate uid itself.
   */
  perContainerUidMap: boolean;
  /** What `ENGINE rm --force` needs to kill at once (podman otherwise stops a container with 10 s of grace). */
  forceRemoveArgs: readonly string[];
  /**
   * How a memory-limit kill is learned (the engines auto-remove a container, and its
   * `OOMKilled` with it): `container-state`: the container is removed by the run after its
   * state is read; `parent-cgroup`: the limit is set on a cgroup of agentcell's that holds
   * the container (podman's OOMKilled stays false on cgroup v1 here), read as bwrap's is;
   * `none`: not learned (a rootless engine without delegated cgroups enforces no limit).
   */
  oomReport: 'container-state' | 'parent-cgroup' | 'none';
  /**
   * `run --pidfile`: the engine CLI writes the host pid of the container's first process,
   * which a passed bound then kills itself (its pid namespace dies with it). The engine's own
   * `kill`, a new CLI process, took from 150 ms to over a second on a loaded machine, and a
   * writer at page-cache speed writes a GiB in that time. docker's API kill is one request.
   */
  pidFile: boolean;
}

/** The engine each OCI backend drives. */
export const ENGINE_OF: Readonly<Record<OciBackendName, OciEngine>> = {
  podman: 'podman',
  docker: 'docker',
  gvisor: 'docker',
};

/**
 * The capabilities of `name` for a caller with host uid `hostUid`. Reads podman's
 * containers.conf (whether it manages cgroups itself); changes nothing.
 */
export function ociCapabilities(
  name: OciBackendName,
  hostUid: number,
  hostEnv: NodeJS.ProcessEnv = process.env,
): OciCapabilities {
  switch (name) {
    case 'podman': {
      const rootless = hostUid !== 0;
      // Under systemd, podman's cgroup parent is a slice, and on cgroup v2 conmon reports the kill.
      const oomReport = rootless
        ? 'none'
        : podmanCgroupManager(hostEnv) === 'cgroupfs'
          ? 'parent-cgroup'
          : 'container-state';
      return {
        engine: 'podman',
        localApi: false,
        digestLookup: 'podman-store-cache',
        explicitUlimits: true,
        seccompClone3: 'enosys',
        pidsLimit: 'cgroup',
        homeOwner: 'chown-option',
        tmpfsCopiesUp: true,
        rootless,
        perContainerUidMap: !rootless,
        forceRemoveArgs: ['--time', '0'],
        oomReport,
        pidFile: true,
      };
    }
    case 'docker':
      return {
        engine: 'docker',
        localApi: true,
        digestLookup: 'daemon-api',
        explicitUlimits: false,
        seccompClone3: 'enosys',
        pidsLimit: 'cgroup',
        homeOwner: 'uid-option',
        tmpfsCopiesUp: false,
        rootless: false,
        perContainerUidMap: false,
        forceRemoveArgs: [],
        oomReport: 'container-state',
        pidFile: false,
      };
    case 'gvisor':
      return {
        engine: 'docker',
        runtime: 'runsc',
        localApi: true,
        digestLookup: 'daemon-api',
        explicitUlimits: false,
        seccompClone3: 'kernel',
        pidsLimit: 'sandbox-nproc',
        homeOwner: 'world-sticky',
        tmpfsCopiesUp: false,
        rootless: false,
        perContainerUidMap: false,
        forceRemoveArgs: [],
        oomReport: 'container-state',
        pidFile: false,
      };
  }
}

/** podman's cgroup manager: containers.conf's `cgroup_manager` (the last file that sets it), else systemd where systemd runs. */
export function podmanCgroupManager(hostEnv: NodeJS.ProcessEnv): 'systemd' | 'cgroupfs' {
  const configHome = hostEnv['XDG_CONFIG_HOME'] ?? join(hostEnv['HOME'] ?? '/', '.config');
  const files = [
    '/usr/share/containers/containers.conf',
    '/etc/containers/containers.conf',
    join(configHome, 'containers', 'containers.conf'),
    hostEnv['CONTAINERS_CONF'],
  ];
  let manager: string | undefined;
  for (const file of files) {
    if (file === undefined) continue;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    manager = /^\s*cgroup_manager\s*=\s*"(\w+)"/m.exec(text)?.[1] ?? manager;
  }
  if (manager === 'cgroupfs' || manager === 'systemd') return manager;
  return existsSync('/run/systemd/system') ? 'systemd' : 'cgroupfs';
}
