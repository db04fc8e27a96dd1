import { spawn, spawnSync, type StdioOptions } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { AgentcellError } from '../errors.js';
import { cellHostname } from './cell-hostname.js';
import type { CgroupPlan } from './cgroup-limits.js';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import type { Backend, BackendPlan, BackendProbe, CellSpec, RunControl, RunOutcome } from './backend.js';
import { createCgroups, planCgroupLimits, readLimitHit, removeCgroups, wrapInCgroups } from './cgroup-limits.js';
import { hostEtcSecrets, hostSystemDirs } from './host-rootfs.js';
import { hostRootGap } from './host-uid.js';
import {
  planUidShift,
  shiftedMountSource,
  shiftedWrapper,
  stagedPath,
  stagePrefix,
  userNamespacePrefix,
  type UidShift,
} from './uid-shift.js';
import { makeNeutralDir } from '../_internal/neutral-dir.js';
import { buildSeccompFilter } from './seccomp-filter.js';
import { makeStagedFiles, removeStagedFiles, stageSmallFiles } from './staged-files.js';
import { superviseProcess } from './supervise-process.js';
import { hostTool } from '../_internal/find-executable.js';
import { receiveCellListener } from './receive-cell-listener.js';

/** Descriptor numbers bwrap reads from; fixed so --dry-run output is stable. */
const SECCOMP_FD = 3;
const EMPTY_FD = 4;
const ARGS_FD = 5;
/** A gateway cell's IPC channel (NODE_CHANNEL_FD), over which the bridge hands its listener over. */
const HANDOFF_FD = 6;

export interface BwrapOptions {
  /** The bwrap executable (default: `bwrap` on agentcell's PATH, by absolute path: hostTool). */
  executable?: string;
  /** The uid agentcell runs as: bwrap maps the cell's uid onto it (default: this process's). */
  hostUid?: number;
  /** A gateway cell's bridge hands its listener to agentcell and exits (default), or stays and relays (false: benchmarks). */
  listenerHandoff?: boolean;
}

export function createBwrapBackend(options: BwrapOptions = {}): Backend {
  const executable = options.executable ?? hostTool('bwrap');
  const hostUid = options.hostUid ?? process.getuid?.() ?? 1000;
  const listenerHandoff = options.listenerHandoff ?? true;
  return {
    name: 'bwrap',
    tool: options.executable ?? 'bwrap',
    listenerHandoff,
    probe: () => probeBwrap(executable),
    plan: (spec) => planBwrap(spec, executable, hostUid, listenerHandoff),
    run: (spec, plan, control) => runBwrap(spec, plan, control),
  };
}

export function probeBwrap(executable = 'bwrap'): BackendProbe {
  const version = spawnSync(executable, ['--version'], { encoding: 'utf8', timeout: 3000 });
  if (version.error || version.status !== 0)
    return {
      available: false,
      detail: `${executable} not found`,
      fix: 'sudo apt-get install bubblewrap   (Fedora: sudo dnf install bubblewrap)',
    };
  const trial = spawnSync(executable, ['--unshare-user', '--unshare-pid', '--ro-bind', '/', '/', 'true'], {
    encoding: 'utf8',
    timeout: 5000,
  });
  const versionText = version.stdout.trim().replace(/^bubblewrap\s+/, '');
  if (trial.status !== 0)
    return {
      available: false,
      version: versionText,
      detail: `bwrap cannot create namespaces: ${trial.stderr.trim()}`,
      fix: 'enable unprivileged user namespaces (see `agentcell doctor`)',
    };
  return { available: true, version: versionText, detail: `bubblewrap ${versionText}` };
}

/** The exact bwrap invocation for a cell. Reads the host layout; changes nothing. */
export function planBwrap(
  spec: DeepReadonly<CellSpec>,
  executable = hostTool('bwrap'),
  hostUid = process.getuid?.() ?? 1000,
  listenerHandoff = true,
): BackendPlan {
  const args: string[] = [executable];
  const fds: BackendPlan['fds'] = [];
  // Whatever uid the cell has inside, on the host it is bwrap's (bwrap maps only that one):
  // the caller's, or for a root caller the first of root's subordinate range (uid-shift.ts).
  const planned = hostUid === 0 ? planUidShift(spec) : undefined;
  const shift = planned && 'uid' in planned ? planned : undefined;
  const gaps: string[] = hostRootGap(shift ? shift.uid : hostUid);
  if (planned && 'none' in planned) gaps.push(`no unprivileged host uid for the cell: ${planned.none}`);
  // Host paths bwrap binds, where a shifted cell's setup finds them (its uid can't search /root).
  const src = (path: string): string => (shift ? stagedPath(shift, path) : path);

  args.push('--unshare-all', '--unshare-user', '--disable-userns');
  if (spec.network === 'open') args.push('--share-net');
  args.push('--die-with-parent');
  // Without a terminal the cell gets its own session; with one it keeps the session
  // (job control, Ctrl-C) and the seccomp filter blocks TIOCSTI instead.
  if (!spec.tty || !spec.seccomp) args.push('--new-session');
  args.push('--uid', String(spec.identity.uid), '--gid', String(spec.identity.gid));
  args.push('--hostname', cellHostname(spec.cell));
  if (spec.identity.uid === 0) args.push('--cap-drop', 'ALL');

  if (spec.rootfs.kind === 'host') {
    for (const entry of hostSystemDirs()) {
      if (entry.kind === 'symlink') args.push('--symlink', entry.target, entry.link);
      else args.push('--ro-bind', entry.path, entry.path);
    }
  } else if (spec.rootfs.overlay) {
    args.push('--bind', src(spec.rootfs.overlay.merged), '/');
  } else {
    args.push('--ro-bind', src(spec.rootfs.path), '/');
  }
  // The whole of /proc read-only: bwrap covers /proc/sys and /proc/sysrq-trigger only when
  // it finds them writable, and its check misses both (a root caller's cell could change
  // host sysctls such as kernel.core_pattern). Writes through /proc/self/fd/N still work:
  // they reach the file's own mount.
  args.push('--proc', '/proc', '--remount-ro', '/proc', '--dev', '/dev');
  // Scratch dirs live in memory: each is at most the disk limit (and the memory limit's, where set).
  const sized = spec.limits.diskBytes === undefined ? [] : ['--size', String(spec.limits.diskBytes)];
  args.push(...sized, '--tmpfs', '/tmp', ...sized, '--tmpfs', '/run', '--dir', '/var', ...sized, '--tmpfs', '/var/tmp');
  // Small files come as copies on /dev/shm, so mountinfo shows no host path of agentcell's (staged-files.ts).
  const staged = stageSmallFiles(spec);
  if (staged.gap) gaps.push(staged.gap);
  const mounts = staged.binds.slice(0, spec.mounts.length);
  let argv = spec.argv;
  if (spec.network === 'gateway') {
    const { egress } = spec;
    if (!egress) throw new Error('a gateway cell needs its egress wiring');
    // Still no network namespace of the host's: the socket is the only way out.
    for (const { source, target } of staged.binds.slice(spec.mounts.length))
      args.push('--ro-bind', src(source), target);
    argv = [...(listenerHandoff ? egress.handoffPrefix : egress.argvPrefix), ...spec.argv];
    if (listenerHandoff)
      fds.push({
        fd: HANDOFF_FD,
        purpose:
          "node IPC channel (NODE_CHANNEL_FD): the cell's bridge hands its 127.0.0.1 proxy listener to agentcell; closed before the command",
      });
  }
  // Every home on the host disappears, not only the caller's.
  args.push(...sized, '--tmpfs', '/home', ...sized, '--tmpfs', '/root');
  if (!spec.home.startsWith('/home/') && spec.home !== '/root') args.push(...sized, '--tmpfs', spec.home);
  else args.push('--dir', spec.home);

  // A shifted cell is not host root: file modes keep root-only /etc files from it, so only
  // the fixed list is masked (and no /etc walk costs the run).
  const masks = [
    ...(spec.rootfs.kind === 'host' ? hostEtcSecrets('/etc', hostUid === 0 && !shift) : []),
    ...spec.masks,
  ];
  const { workspace } = spec;
  if (workspace.overlay) args.push('--bind', src(workspace.overlay.merged), workspace.path);
  else args.push(workspace.mode === 'direct' ? '--bind' : '--ro-bind', src(workspace.path), workspace.path);
  for (const path of spec.readonlyPaths) args.push('--ro-bind', src(path), path);
  for (const mount of mounts) {
    // A user's rw mount is not idmapped: the cell writes there as its own host uid (the
    // neutral runtime dir's and the agent's home are agentcell's own, reached on the stage).
    const source = shift ? shiftedMountSource(shift, mount) : mount.source;
    args.push(mount.mode === 'rw' ? '--bind' : '--ro-bind', source, mount.target);
  }
  for (const mask of masks) {
    if (mask.kind === 'file') args.push('--perms', '0000', '--ro-bind-data', String(EMPTY_FD), mask.target);
    else args.push('--perms', '0000', '--tmpfs', mask.target, '--remount-ro', mask.target);
  }
  if (masks.some((m) => m.kind === 'file')) fds.push({ fd: EMPTY_FD, purpose: '/dev/null: content of masked files' });

  if (spec.seccomp) {
    const filter = buildSeccompFilter();
    if (filter) {
      args.push('--seccomp', String(SECCOMP_FD));
      fds.push({
        fd: SECCOMP_FD,
        purpose: `seccomp filter, ${filter.instructions} BPF instructions, blocks ${filter.blocked.join(', ')}`,
      });
    } else {
      gaps.push(`no seccomp filter for this CPU architecture`);
      if (spec.tty) gaps.push('terminal input injection (TIOCSTI) not blocked');
    }
  }
  args.push('--chdir', spec.cwd, '--', ...argv);
  // The overlay wrapper mounts the layers in a namespace of its own, then execs bwrap.
  // The rootfs wrapper, if any, runs first: the workspace's then sees the merged root's mount.
  const rootfsPrefix = spec.rootfs.kind === 'directory' ? (spec.rootfs.overlay?.argvPrefix ?? []) : [];
  // No file the cell writes grows past the disk limit (RLIMIT_FSIZE, inherited by the cell;
  // set after the overlay wrappers, so a fuse-overlayfs daemon they start is not bound by it).
  const fsize =
    spec.limits.diskBytes === undefined ? [] : [hostTool('prlimit'), `--fsize=${spec.limits.diskBytes}`, '--'];
  const wrappers = [...rootfsPrefix, ...(workspace.overlay ? workspace.overlay.argvPrefix : [])];
  const full = shift
    ? [...shiftedPrefix(shift, rootfsPrefix, workspace.overlay?.argvPrefix ?? []), ...fsize, ...args]
    : [...wrappers, ...fsize, ...args];
  // The run passes bwrap's arguments through a pipe: the cell's pid 1 is bwrap, and its
  // command line would show every host path bound in (state dir, install path, layers).
  // (bwrap reads only options there: the command stays on its command line.)
  fds.push({ fd: ARGS_FD, purpose: `bwrap's options (--args): argv from ${executable} to the -- before the command` });
  // Where bwrap's options sit in an argv that ends with `args`: after the executable, up to the `--`.
  const optionsIn = (all: string[]): BackendPlan['argsFd'] => ({
    fd: ARGS_FD,
    start: all.length - args.length + 1,
    end: all.length - argv.length - 1,
  });
  const plan: BackendPlan = {
    backend: 'bwrap',
    argv: full,
    argsFd: optionsIn(full),
    env: { ...spec.env },
    fds,
    gaps,
  };
  if (spec.network === 'gateway' && listenerHandoff) plan.handoffFd = HANDOFF_FD;
  if (staged.staging) plan.staging = staged.staging;
  if (shift) plan.stageDir = shift.stage;
  const { pids, memoryBytes, cpus } = spec.limits;
  if (pids !== undefined || memoryBytes !== undefined || cpus !== undefined) {
    const cgroups = planCgroupLimits(spec.limits, `${spec.cell}-${process.pid}`);
    plan.argv = wrapInCgroups(cgroups, full);
    plan.argsFd = optionsIn(plan.argv);
    plan.cgroups = cgroups;
    gaps.push(...cgroups.gaps);
  }
  return plan;
}

async function runBwrap(
  spec: DeepReadonly<CellSpec>,
  plan: DeepReadonly<BackendPlan>,
  control: RunControl = {},
): Promise<RunOutcome> {
  const { argv, byFd } = commandLine(plan);
  const [executable, ...args] = argv;
  if (executable === undefined) throw new Error('empty bwrap plan');
  const filter = spec.seccomp ? buildSeccompFilter() : undefined;
  if (plan.cgroups) createCgroupsOrExplain(plan.cgroups);
  const emptyFd = openSync('/dev/null', 'r');
  try {
    if (plan.staging) makeStagedFiles(plan.staging);
    if (plan.stageDir) makeNeutralDir(plan.stageDir);
    const stdio: StdioOptions = [
      'inherit',
      'inherit',
      'inherit',
      filter ? 'pipe' : 'ignore',
      emptyFd,
      byFd ? 'pipe' : 'ignore',
    ];
    // node sets NODE_CHANNEL_FD (= the index) and NODE_CHANNEL_SERIALIZATION_MODE in bwrap's env, which the cell gets.
    if (plan.handoffFd !== undefined) stdio[plan.handoffFd] = 'ipc';
    const child = spawn(executable, args, {
      env: plan.env,
      stdio,
      // Without a terminal, bwrap leads its own process group so signals reach only it.
      detached: !spec.tty,
    });
    // At once, before the event loop reads the channel (see receive-cell-listener.ts).
    if (plan.handoffFd !== undefined) receiveCellListener(child, control.adoptListener);
    const seccompPipe = child.stdio[SECCOMP_FD] as Writable | null;
    if (filter && seccompPipe) {
      seccompPipe.on('error', () => undefined); // bwrap failing early closes its end
      seccompPipe.end(filter.program);
    }
    const argsPipe = plan.argsFd ? (child.stdio[plan.argsFd.fd] as Writable | null) : null;
    if (byFd && argsPipe) {
      argsPipe.on('error', () => undefined);
      argsPipe.end(byFd);
    }
    const outcome = await superviseProcess(child, {
      tty: spec.tty,
      timeoutMs: spec.limits.timeoutMs,
      // bwrap forks the cell's init (pid 1 inside), which forks the command. In a gateway
      // cell that is the bridge prelude, which execs the command in place (the bridge is
      // the prelude's child, gone by then; a relaying one is detached: a later child of
      // pid 1, never the first). bwrap's own child is
      // its last: a fuse-overlayfs workspace's daemon was started before bwrap, in its process.
      commandPid: () => childOf(childOf(child.pid, 'last'), 'first'),
      stop: control.stop,
    });
    const limitHit = plan.cgroups && outcome.exitCode !== 0 ? readLimitHit(plan.cgroups, spec.limits) : undefined;
    return limitHit ? { ...outcome, ...limitHit } : outcome;
  } finally {
    closeSync(emptyFd);
    if (plan.staging) removeStagedFiles(plan.staging);
    if (plan.cgroups) await removeCgroups(plan.cgroups);
  }
}

/**
 * A shifted cell's wrappers: host root stages the idmapped sources and mounts the overlays
 * (on the staged paths), then the rest runs in the cell's user namespace.
 */
function shiftedPrefix(shift: UidShift, rootfs: readonly string[], workspace: readonly string[]): string[] {
  return [
    ...stagePrefix(shift),
    ...shiftedWrapper(shift, rootfs),
    ...shiftedWrapper(shift, workspace),
    ...userNamespacePrefix(shift),
  ];
}

/** The argv the run executes: bwrap's options moved to their descriptor (NUL-terminated each). */
function commandLine(plan: DeepReadonly<BackendPlan>): { argv: string[]; byFd?: Buffer } {
  if (!plan.argsFd) return { argv: [...plan.argv] };
  const { fd, start, end } = plan.argsFd;
  return {
    argv: [...plan.argv.slice(0, start), '--args', String(fd), ...plan.argv.slice(end)],
    byFd: Buffer.from(
      plan.argv
        .slice(start, end)
        .map((a) => `${a}\0`)
        .join(''),
    ),
  };
}

function createCgroupsOrExplain(plan: DeepReadonly<CgroupPlan>): void {
  try {
    createCgroups(plan);
  } catch (cause) {
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `cannot set up resource limits in ${plan.dirs.join(', ')}: ${(cause as Error).message}; remove [resources] pids/memory or run agentcell doctor`,
      { cause },
    );
  }
}

function childOf(pid: number | undefined, which: 'first' | 'last'): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/);
    const child = which === 'first' ? children[0] : children.at(-1);
    return child ? Number(child) : undefined;
  } catch {
    return undefined; // already gone
  }
}
