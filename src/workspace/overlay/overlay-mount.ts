import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { AgentcellError } from '../../errors.js';
import type { LayerStack, OverlayDriver } from './layer-stack.js';
import { layerDirName } from './layer-stack.js';
import { findExecutable, SYSTEM_DIRS } from '../../_internal/find-executable.js';

export type { OverlayDriver } from './layer-stack.js';

/** Host programs the wrapper runs, by absolute path where known. */
export interface OverlayTools {
  unshare: string;
  mount: string;
  /** For the fuse-overlayfs driver: the daemon, setpriv (its parent-death signal) and mountpoint. */
  fuse?: { fuseOverlayfs: string; setpriv: string; mountpoint: string };
}

export interface OverlayWrapper {
  /** Put before the backend's argv (after any cgroup wrapper): mounts the overlay, then execs the rest. */
  argvPrefix: string[];
  /** The merged view to bind at the workspace's path in the cell (`--bind merged workspace`). */
  merged: string;
}

/**
 * The overlay is mounted in a user + mount namespace made by `unshare` just for the
 * cell (root there is the host user who runs agentcell, so files in the upper layer
 * belong to that user), and bwrap starts nested inside it. The mount lives only in
 * that namespace: the host never sees it, and it is gone when the cell's last
 * process exits. `userxattr` keeps overlay metadata in `user.overlay.*` xattrs,
 * which also turns redirects and metacopy off, so a layer holds plain files,
 * whiteouts (character devices 0/0) and opaque dirs (`user.overlay.opaque=y`) only.
 *
 * The script works in the cell dir so the layer paths stay short and need no
 * escaping, and hands the workspace to the kernel as an open descriptor
 * (`/proc/self/fd/9`) so any character in its path (`,` `:` `"` newline) is safe.
 * unshare and sh both exec, so the backend's pid, its descriptors (seccomp filter,
 * masks) and its exit status pass through unchanged. A failed mount exits 125. The
 * `cd`s leave the cell dir in OLDPWD and the caller's cwd in PWD, which the exec'd
 * backend would carry into the cell (bwrap's pid 1 keeps the environment it was started
 * with): unset. The layer paths it mounts with are relative, so the overlay's
 * options in the cell's mountinfo (`lowerdir=layers/…:/proc/self/fd/9,upperdir=upper`)
 * name no host path.
 */
const KERNEL_SCRIPT = [
  'cd "$2" || exit 125',
  'if ! "$1" -t overlay overlay -o "lowerdir=$4/proc/self/fd/9,upperdir=upper,workdir=work,userxattr" merged 9<"$3"; then',
  '  echo "agentcell-overlay: cannot mount the workspace overlay in $2" >&2; exit 125',
  'fi',
  'cd "$OLDPWD" || cd /',
  'unset OLDPWD PWD',
  'shift 6',
  'exec "$@"',
].join('\n');

/**
 * fuse-overlayfs runs in the foreground, in the background of this script, with a
 * parent-death signal: the script execs the backend, so the daemon dies with it and no
 * process outlives the cell. The script waits (at most 5 s) until the mount is there.
 * fuse-overlayfs writes the same whiteouts as the kernel and marks opaque directories
 * with `user.fuseoverlayfs.opaque` plus a `.wh..wh..opq` file (layer-diff reads both).
 * Its stderr (notes about mount options on every start) goes to the cell dir, shown on failure.
 */
const FUSE_SCRIPT = [
  'cd "$2" || exit 125',
  '"$5" --pdeathsig KILL -- "$1" -f -o "lowerdir=$4/proc/self/fd/9,upperdir=upper,workdir=work" merged 9<"$3" 2>fuse-overlayfs.log &',
  'i=0',
  'while ! "$6" -q merged; do',
  '  i=$((i + 1))',
  '  if [ "$i" -gt 1000 ] || ! kill -0 $! 2>/dev/null; then',
  '    cat fuse-overlayfs.log >&2',
  '    echo "agentcell-overlay: cannot mount the workspace overlay in $2 with fuse-overlayfs" >&2; exit 125',
  '  fi',
  '  sleep 0.005',
  'done',
  'cd "$OLDPWD" || cd /',
  'unset OLDPWD PWD',
  'shift 6',
  'exec "$@"',
].join('\n');

/** unshare and mount by absolute path, or undefined when either is missing. */
export function overlayTools(): OverlayTools | undefined {
  const unshare = findExecutable('unshare', process.env, SYSTEM_DIRS);
  const mount = findExecutable('mount', process.env, SYSTEM_DIRS);
  if (!unshare || !mount) return undefined;
  const fuseOverlayfs = findExecutable('fuse-overlayfs', process.env, SYSTEM_DIRS);
  const setpriv = findExecutable('setpriv', process.env, SYSTEM_DIRS);
  const mountpoint = findExecutable('mountpoint', process.env, SYSTEM_DIRS);
  return fuseOverlayfs && setpriv && mountpoint
    ? { unshare, mount, fuse: { fuseOverlayfs, setpriv, mountpoint } }
    : { unshare, mount };
}

const DEFAULT_TOOLS: OverlayTools = {
  unshare: 'unshare',
  mount: 'mount',
  fuse: { fuseOverlayfs: 'fuse-overlayfs', setpriv: 'setpriv', mountpoint: 'mountpoint' },
};

/**
 * The argv prefix that gives a cell the stack merged over the workspace. Pure (for
 * --dry-run too): pass `overlaySupport().tools` for absolute paths; the defaults are
 * looked up on the PATH of the environment the backend process gets.
 */
export function overlayWrapper(
  stack: LayerStack,
  workspace: string,
  tools: OverlayTools = DEFAULT_TOOLS,
): OverlayWrapper {
  if (isInside(stack.cellDir, workspace) || isInside(workspace, stack.cellDir))
    throw new AgentcellError(
      'WORKSPACE_INVALID',
      `the cell's state dir ${stack.cellDir} and the workspace ${workspace} overlap: the cell would see its own layers; move AGENTCELL_HOME or XDG_STATE_HOME out of the workspace`,
    );
  // Newest layer first, each followed by ':'; the script appends the workspace.
  const lowers = stack.layers.map((l) => `layers/${layerDirName(l)}:`).reverse();
  // The copy driver mounts nothing: `merged` is a plain directory the run prepares.
  if (stack.driver === 'copy') return { argvPrefix: [], merged: stack.merged };
  const fuse = stack.driver === 'fuse-overlayfs' ? tools.fuse : undefined;
  if (stack.driver === 'fuse-overlayfs' && !fuse)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `cell ${stack.cellDir} keeps its layers with fuse-overlayfs, which is not installed: sudo apt-get install fuse-overlayfs`,
    );
  const [program, setpriv, mountpoint] = fuse
    ? [fuse.fuseOverlayfs, fuse.setpriv, fuse.mountpoint]
    : [tools.mount, '', ''];
  return {
    argvPrefix: inMountNamespace(tools, fuse ? FUSE_SCRIPT : KERNEL_SCRIPT, 'agentcell-overlay', [
      program,
      stack.cellDir,
      workspace,
      lowers.join(''),
      setpriv,
      mountpoint,
    ]),
    merged: stack.merged,
  };
}

/**
 * `sh -c SCRIPT NAME ARGS…` in a user + mount namespace of its own, where root is the host
 * user who runs agentcell: the prefix every overlay wrapper puts before the backend's argv.
 */
export function inMountNamespace(
  tools: Pick<OverlayTools, 'unshare'>,
  script: string,
  name: string,
  args: string[],
): string[] {
  return [
    tools.unshare,
    '--user',
    '--map-root-user',
    '--mount',
    '--propagation',
    'private',
    '--',
    '/bin/sh',
    '-c',
    script,
    name,
    ...args,
  ];
}

export interface OverlaySupport {
  available: boolean;
  /** One line for doctor, inspect and the run's assurance reasons. */
  detail: string;
  fix?: string;
  tools?: OverlayTools;
}

const probed = new Map<string, OverlaySupport>();

/**
 * Whether overlayfs can be mounted in an unprivileged user namespace here, with an
 * upper layer on the filesystem of `stateDir` (which must support user xattrs):
 * mounts a scratch overlay in a temporary dir there (or in its nearest existing
 * parent), writes and deletes a file, and removes it all. About 12 ms, once per
 * process and directory; a run need not wait for it (a failed mount exits 125).
 */
export function overlaySupport(stateDir: string = tmpdir(), driver: OverlayDriver = 'kernel'): OverlaySupport {
  const key = `${driver}:${stateDir}`;
  const cached = probed.get(key);
  if (cached) return cached;
  const result = probe(stateDir, driver);
  probed.set(key, result);
  return result;
}

export const OVERLAY_DRIVER_ENV = 'AGENTCELL_OVERLAY_DRIVER';

export interface DriverChoice {
  driver: OverlayDriver;
  /** Why the kernel's overlayfs is not used, when it is not (a line for the assurance reasons). */
  fallback?: string;
}

/**
 * The driver a new cell's layers get: `AGENTCELL_OVERLAY_DRIVER` (kernel |
 * fuse-overlayfs | copy) when set, else the kernel's overlayfs when a probe mount works,
 * else fuse-overlayfs when that works, else the copy driver. Probes cost ~12 ms, once
 * per new cell.
 */
export function chooseOverlayDriver(stateDir: string, env: NodeJS.ProcessEnv = process.env): DriverChoice {
  const forced = env[OVERLAY_DRIVER_ENV];
  if (forced !== undefined && forced !== '' && forced !== 'auto') {
    if (forced !== 'kernel' && forced !== 'fuse-overlayfs' && forced !== 'copy')
      throw new AgentcellError(
        'USAGE',
        `${OVERLAY_DRIVER_ENV}=${forced}: expected "kernel", "fuse-overlayfs", "copy" or "auto"`,
      );
    return forced === 'kernel' ? { driver: forced } : { driver: forced, fallback: `${OVERLAY_DRIVER_ENV}=${forced}` };
  }
  const kernel = overlaySupport(stateDir, 'kernel');
  if (kernel.available) return { driver: 'kernel' };
  const fuse = overlaySupport(stateDir, 'fuse-overlayfs');
  if (fuse.available) return { driver: 'fuse-overlayfs', fallback: kernel.detail };
  return { driver: 'copy', fallback: `${kernel.detail}; ${fuse.detail}` };
}

function probe(stateDir: string, driver: OverlayDriver): OverlaySupport {
  if (driver === 'copy')
    return { available: true, detail: 'a copy of the workspace per run, no overlay mount (slow: O(workspace))' };
  const tools = overlayTools();
  if (!tools)
    return {
      available: false,
      detail: 'overlay workspace needs unshare and mount (util-linux)',
      fix: 'sudo apt-get install util-linux   (Fedora: sudo dnf install util-linux)',
    };
  if (driver === 'fuse-overlayfs' && !tools.fuse)
    return {
      available: false,
      detail: 'no fuse-overlayfs fallback (needs fuse-overlayfs, and setpriv and mountpoint from util-linux)',
      fix: 'sudo apt-get install fuse-overlayfs',
      tools,
    };
  let scratch: string;
  try {
    scratch = mkdtempSync(join(existingAncestor(stateDir), '.overlay-probe-'));
  } catch (error) {
    return { available: false, detail: `cannot probe overlayfs in ${stateDir}: ${(error as Error).message}` };
  }
  try {
    const cellDir = join(scratch, 'cell');
    const stack: LayerStack = {
      cellDir,
      layers: [],
      upper: join(cellDir, 'upper'),
      work: join(cellDir, 'work'),
      merged: join(cellDir, 'merged'),
      driver,
    };
    const lower = join(scratch, 'lower');
    for (const dir of [cellDir, stack.upper, stack.work, stack.merged, lower]) mkdirSync(dir);
    writeFileSync(join(lower, 'probe'), 'lower\n');
    const { argvPrefix } = overlayWrapper(stack, lower, tools);
    const [command, ...args] = argvPrefix;
    const check = 'echo upper > cell/merged/probe && rm cell/merged/probe';
    const run = spawnSync(command!, [...args, '/bin/sh', '-c', check], {
      cwd: scratch,
      encoding: 'utf8',
      timeout: 5000,
    });
    if (run.status !== 0) {
      const reason = (run.error?.message ?? run.stderr.trim()) || `exit ${run.status}`;
      if (driver === 'fuse-overlayfs')
        return {
          available: false,
          detail: `fuse-overlayfs in a user namespace does not work here (${reason.split('\n')[0]})`,
          fix: existsSync('/dev/fuse')
            ? 'let users open /dev/fuse (mode 0666, as the fuse3 package sets it)'
            : 'load the fuse module: sudo modprobe fuse',
          tools,
        };
      return {
        available: false,
        detail: `overlayfs in a user namespace does not work here (${reason.split('\n')[0]})`,
        fix: apparmorRestrictsUserns()
          ? 'AppArmor denies unconfined programs a usable user namespace (kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu >= 23.10): give unshare a profile with `userns,` or set that sysctl to 0'
          : 'needs Linux >= 5.11 with unprivileged user namespaces and a state dir on a filesystem with user xattrs (ext4, xfs, btrfs, tmpfs >= 6.6)',
        tools,
      };
    }
    return {
      available: true,
      detail: driver === 'kernel' ? 'overlayfs in a user namespace (userxattr)' : 'fuse-overlayfs in a user namespace',
      tools,
    };
  } finally {
    // overlayfs leaves work/work at mode 000, which a recursive rm cannot enter unprivileged.
    try {
      chmodSync(join(scratch, 'cell', 'work', 'work'), 0o700);
    } catch {
      // not created
    }
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The directory itself or its nearest existing parent (same filesystem, most likely): the probe creates nothing lasting. */
function existingAncestor(dir: string): string {
  let current = resolve(dir);
  while (!existsSync(current) && dirname(current) !== current) current = dirname(current);
  return current;
}

function apparmorRestrictsUserns(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/apparmor_restrict_unprivileged_userns', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

/** Whether `path` is `dir` or below it. */
function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (rel !== '..' && !rel.startsWith('../') && !isAbsolute(rel));
}

/** Absolute path of a program on PATH or in the usual system dirs. */
