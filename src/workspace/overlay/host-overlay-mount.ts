import { HOST_MOUNT_READY, HOST_MOUNT_RELEASE } from '../../_internal/held-mount-protocol.js';
import type { LayerStack } from './layer-stack.js';
import { layerDirName } from './layer-stack.js';

/** The command that holds a cell's layer stack mounted on the host for the length of a run. */
export interface HostOverlayMount {
  /** Where the merged view appears on the host, to bind at the workspace's path in the container. */
  merged: string;
  /**
   * Mounts, prints {@link HOST_MOUNT_READY} once the mount is in place, then holds it until
   * it reads {@link HOST_MOUNT_RELEASE} and unmounts it, lazily: a container runtime that
   * has not quite let go must not leave the mount behind.
   */
  hold: string[];
}

/**
 * An OCI engine resolves bind sources in its own mount namespace (dockerd is a daemon;
 * podman's conmon outlives any namespace we could make for it), so the overlay the bwrap
 * backend mounts privately (overlay-mount.ts) is invisible to it. For OCI the host mounts
 * the same stack, with the same options (`userxattr`: whiteouts and opaque dirs as the
 * bwrap cells write them), at the cell's `merged` dir for the length of the run. That
 * needs root on the host, which rootful engines imply anyway.
 *
 * One process mounts and unmounts, so the run spawns nothing more at its end. If agentcell
 * dies instead of releasing it (its end of the pipe closes without the word), the mount
 * stays: the engine may still be starting the container, which must find the overlay, not
 * the empty dir under it. A mount a killed run left behind is dropped before the next
 * mount. As in overlay-mount.ts, the script works in the cell dir and hands the workspace
 * to the kernel as `/proc/self/fd/9`, so no character of its path needs escaping. A
 * failed mount exits 125.
 */
const HOLD_SCRIPT = [
  // $5, when given, is where to mount instead of `merged`: a root caller's OCI cell reads its
  // layers through idmapped clones (uid-shift.ts) and mounts the view at the cell's own path.
  'cd "$2" || exit 125',
  'at=${5:-merged}',
  'if mountpoint -q "$at"; then umount -l "$at" || exit 125; fi',
  'if ! "$1" -t overlay overlay -o "lowerdir=$4/proc/self/fd/9,upperdir=upper,workdir=work,userxattr" "$at" 9<"$3"; then',
  '  echo "agentcell-overlay: cannot mount the workspace overlay in $2" >&2; exit 125',
  'fi',
  `echo ${HOST_MOUNT_READY}`,
  // Exits 0 only once released and unmounted (a root caller's stage is then detached too).
  `read -r line && [ "$line" = ${HOST_MOUNT_RELEASE} ] && umount --lazy "$at"`,
].join('\n');

export function hostOverlayMount(stack: LayerStack, workspace: string): HostOverlayMount {
  // Newest layer first, each followed by ':'; the script appends the workspace.
  const lowers = stack.layers.map((l) => `layers/${layerDirName(l)}:`).reverse();
  return {
    merged: stack.merged,
    hold: ['/bin/sh', '-c', HOLD_SCRIPT, 'agentcell-overlay', 'mount', stack.cellDir, workspace, lowers.join('')],
  };
}
