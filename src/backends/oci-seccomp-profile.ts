import { createHash } from 'node:crypto';
import { BLOCKED_IOCTLS, BLOCKED_SYSCALLS, EPERM, seccompArch } from './seccomp-filter.js';

/**
 * agentcell's seccomp filter as an OCI seccomp profile, for podman, docker and gVisor:
 * the blocked set of seccomp-filter.ts (bwrap's filter), plus what bwrap gets from
 * `--disable-userns`: no user namespace inside the cell, the door to capabilities
 * (mount, …) in a namespace of the cell's own. Everything else is allowed, as in the
 * bwrap cell: the container has no capabilities and no-new-privileges, so what the
 * engines' own profiles add is mostly what the kernel refuses a capless process anyway.
 * Only this host's architecture is listed, so a foreign ABI's syscalls are refused.
 */
export interface OciSeccompProfile {
  defaultAction: 'SCMP_ACT_ALLOW';
  architectures: string[];
  syscalls: OciSeccompRule[];
}

interface OciSeccompRule {
  names: string[];
  action: 'SCMP_ACT_ERRNO';
  errnoRet: number;
  args?: { index: number; value: number; valueTwo: number; op: 'SCMP_CMP_MASKED_EQ' }[];
}

const CLONE_NEWUSER = 0x10000000;
const ENOSYS = 38;
/** ioctl's request is an unsigned int: the kernel ignores the upper half, so the filter must too. */
const LOW_32_BITS = 0xffffffff;

/**
 * The profile for this host's architecture, or undefined where agentcell has no table.
 * `clone3`: `enosys` where the kernel has it (runc, crun); `kernel` for gVisor, whose own
 * kernel answers ENOSYS already and which returns EPERM for any errno a profile names, so
 * a rule there would stop libc from falling back to clone (no threads at all).
 */
export function ociSeccompProfile(clone3: 'enosys' | 'kernel', arch?: string): OciSeccompProfile | undefined {
  const name = seccompArch(arch);
  if (name === undefined) return undefined;
  const deny = (names: string[], args?: OciSeccompRule['args'], errnoRet = EPERM): OciSeccompRule =>
    args ? { names, action: 'SCMP_ACT_ERRNO', errnoRet, args } : { names, action: 'SCMP_ACT_ERRNO', errnoRet };
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: [name],
    syscalls: [
      deny([...BLOCKED_SYSCALLS]),
      ...Object.values(BLOCKED_IOCTLS).map((request) =>
        deny(['ioctl'], [{ index: 1, value: LOW_32_BITS, valueTwo: request, op: 'SCMP_CMP_MASKED_EQ' }]),
      ),
      // The flags are the first argument of both on x86_64 and arm64.
      deny(
        ['unshare', 'clone'],
        [{ index: 0, value: CLONE_NEWUSER, valueTwo: CLONE_NEWUSER, op: 'SCMP_CMP_MASKED_EQ' }],
      ),
      // clone3 passes its flags in memory, where seccomp cannot look: ENOSYS makes libc fall back to clone.
      ...(clone3 === 'enosys' ? [deny(['clone3'], undefined, ENOSYS)] : []),
    ],
  };
}

/** The profile as the engines read it, and a name for it that changes when it does. */
export function serializeOciSeccompProfile(profile: OciSeccompProfile): { json: string; fileName: string } {
  const json = JSON.stringify(profile);
  const hash = createHash('sha256').update(json).digest('hex').slice(0, 16);
  return { json, fileName: `seccomp-${hash}.json` };
}
