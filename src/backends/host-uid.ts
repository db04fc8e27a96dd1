/**
 * The assurance line of a cell whose uid is the host's uid 0 (DESIGN.md invariant 10 says
 * it never should be). bwrap maps the cell's uid, whatever it is inside, onto the uid of
 * the process that starts it: for a root caller that is root's subordinate uid
 * (uid-shift.ts), or host uid 0 where that cannot be set up. A rootful engine (podman or
 * docker as root, docker through its socket, and gVisor's gofer for the files it writes)
 * maps no uids: a cell uid of 0 is the host's. Such a plan carries this line, which lowers
 * the run's assurance and shows in the banner, `inspect` and the receipt.
 */
export const CELL_MAPS_TO_HOST_ROOT = 'cell maps to host uid 0';

/** The line for a plan whose cell runs as this host uid: present only for uid 0. */
export function hostRootGap(cellHostUid: number): string[] {
  return cellHostUid === 0 ? [CELL_MAPS_TO_HOST_ROOT] : [];
}
