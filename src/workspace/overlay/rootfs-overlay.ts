import { join } from 'node:path';
import { inMountNamespace, type OverlayTools } from './overlay-mount.js';

/** A directory rootfs made writable for one cell: its own upper layer over the shared, untouched rootfs. */
export interface RootfsOverlay {
  /** Put before the backend's argv: mounts the rootfs overlay, then execs the rest. */
  argvPrefix: string[];
  /** The merged root to bind at `/`. */
  merged: string;
  /** Where the cell's changes to the rootfs live (kept across runs, dropped with the cell). */
  upper: string;
}

/**
 * As for the workspace (overlay-mount.ts): a user + mount namespace of its own, in which
 * root is the host user who runs agentcell, overlayfs with `userxattr`, the rootfs
 * handed over as descriptor 9 so its path needs no escaping, exec so pids, descriptors
 * and the exit status pass through. A root agent can then install packages: they land in
 * `<cellDir>/rootfs/upper`, and every cell built on the rootfs keeps its own. The rootfs
 * must belong to that host user (root for `agentcell image build --rootfs` run as root):
 * overlayfs copies a file up only when its owner is mapped. A failed mount exits 125.
 */
const SCRIPT = [
  'mkdir -p "$2/upper" "$2/work" "$2/merged" && cd "$2" || exit 125',
  'if ! "$1" -t overlay overlay -o "lowerdir=/proc/self/fd/9,upperdir=upper,workdir=work,userxattr" merged 9<"$3"; then',
  '  echo "agentcell-rootfs: cannot mount an overlay over the rootfs $3 in $2" >&2; exit 125',
  'fi',
  'cd "$OLDPWD" || cd /',
  'unset OLDPWD PWD',
  'shift 3',
  'exec "$@"',
].join('\n');

export function rootfsOverlay(rootfs: string, cellDir: string, tools: OverlayTools): RootfsOverlay {
  const dir = join(cellDir, 'rootfs');
  return {
    argvPrefix: inMountNamespace(tools, SCRIPT, 'agentcell-rootfs', [tools.mount, dir, rootfs]),
    merged: join(dir, 'merged'),
    upper: join(dir, 'upper'),
  };
}
