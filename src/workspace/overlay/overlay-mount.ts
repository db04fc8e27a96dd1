import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { AgentcellError } from '../../errors.js';
import type { LayerStack } from './layer-stack.js';
import { layerDirName } from './layer-stack.js';
import { findExecutable } from '../../find-executable.js';

/** Host programs the wrapper runs, by absolute path where known. */
export interface OverlayTools {
  unshare: string;
  mount: string;
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
 * masks) and its exit status pass through unchanged. A failed mount exits 125.
 */
const SCRIPT = [
  'cd "$2" || exit 125',
  'if ! "$1" -t overlay overlay -o "lowerdir=$4/proc/self/fd/9,upperdir=upper,workdir=work,userxattr" merged 9<"$3"; then',
  '  echo "agentcell-overlay: cannot mount the workspace overlay in $2" >&2; exit 125',
  'fi',
  'cd "$OLDPWD" || cd /',
  'shift 4',
  'exec "$@"',
].join('\n');

const SYSTEM_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];

/** unshare and mount by absolute path, or undefined when either is missing. */
export function overlayTools(): OverlayTools | undefined {
  const unshare = findExecutable('unshare', process.env, SYSTEM_DIRS);
  const mount = findExecutable('mount', process.env, SYSTEM_DIRS);
  return unshare && mount ? { unshare, mount } : undefined;
}

const DEFAULT_TOOLS: OverlayTools = { unshare: 'unshare', mount: 'mount' };

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
  return {
    argvPrefix: [
      tools.unshare,
      '--user',
      '--map-root-user',
      '--mount',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      SCRIPT,
      'agentcell-overlay',
      tools.mount,
      stack.cellDir,
      workspace,
      lowers.join(''),
    ],
    merged: stack.merged,
  };
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
export function overlaySupport(stateDir: string = tmpdir()): OverlaySupport {
  const cached = probed.get(stateDir);
  if (cached) return cached;
  const result = probe(stateDir);
  probed.set(stateDir, result);
  return result;
}

function probe(stateDir: string): OverlaySupport {
  const unshare = findExecutable('unshare', process.env, SYSTEM_DIRS);
  const mount = findExecutable('mount', process.env, SYSTEM_DIRS);
  if (!unshare || !mount)
    return {
      available: false,
      detail: `overlay workspace needs unshare and mount (util-linux); missing: ${[!unshare && 'unshare', !mount && 'mount'].filter(Boolean).join(', ')}`,
      fix: 'sudo apt-get install util-linux   (Fedora: sudo dnf install util-linux)',
    };
  const tools = { unshare, mount };
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
      return {
        available: false,
        detail: `overlayfs in a user namespace does not work here (${reason.split('\n')[0]})`,
        fix: apparmorRestrictsUserns()
          ? 'AppArmor denies unconfined programs a usable user namespace (kernel.apparmor_restrict_unprivileged_userns=1, Ubuntu >= 23.10): give unshare a profile with `userns,` or set that sysctl to 0'
          : 'needs Linux >= 5.11 with unprivileged user namespaces and a state dir on a filesystem with user xattrs (ext4, xfs, btrfs, tmpfs >= 6.6)',
        tools,
      };
    }
    return { available: true, detail: 'overlayfs in a user namespace (userxattr)', tools };
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
