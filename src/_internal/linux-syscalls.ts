/**
 * Linux syscall numbers that differ by architecture, for the perl helpers that make
 * syscalls perl has no function for (`syscall`): the uid-shift helper (uid-shift.ts), the
 * listener handoff (perl-handoff.ts) and the egress gateway's kernel relay (kernel-relay.ts).
 * open_tree 428, move_mount 429 and mount_setattr 442 are the same everywhere. An
 * architecture missing here has none of these helpers.
 */
export interface LinuxSyscalls {
  unshare: number;
  setgroups: number;
  setresuid: number;
  setresgid: number;
  mount: number;
  sendmsg: number;
  splice: number;
  prctl: number;
}

export const LINUX_SYSCALLS: Partial<Record<NodeJS.Architecture, LinuxSyscalls>> = {
  x64: {
    unshare: 272,
    setgroups: 116,
    setresuid: 117,
    setresgid: 119,
    mount: 165,
    sendmsg: 46,
    splice: 275,
    prctl: 157,
  },
  arm64: {
    unshare: 97,
    setgroups: 159,
    setresuid: 147,
    setresgid: 149,
    mount: 40,
    sendmsg: 211,
    splice: 76,
    prctl: 167,
  },
};
