/**
 * The two lines a held host mount speaks: workspace/overlay/host-overlay-mount.ts builds
 * the command, backends/hold-host-mount.ts runs it. Neither layer may import the other.
 */
/** The line the held mount prints when the engine may bind it. */
export const HOST_MOUNT_READY = 'mounted';
/** The line that ends the hold, once the engine is done with the mount. */
export const HOST_MOUNT_RELEASE = 'release';
