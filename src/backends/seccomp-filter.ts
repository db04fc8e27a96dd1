import { arch as hostArch } from 'node:os';

/**
 * A small classic-BPF seccomp filter, assembled here so bwrap needs no libseccomp.
 * It blocks what a cell never needs and an attacker wants: injecting keystrokes into
 * the caller's terminal (TIOCSTI, TIOCLINUX; this is what lets a TTY cell keep its
 * session), the kernel keyring, BPF, perf, userfaultfd, kexec and module loading.
 * Syscalls of a foreign ABI (i386 or x32 on x86_64, arm32 on arm64) are refused, so
 * the table cannot be bypassed through another syscall numbering.
 *
 * The blocked set is the one source of truth for every backend: OCI engines get the
 * same set as a seccomp profile (oci-seccomp-profile.ts).
 */

/** Syscalls a cell may never make, by name (the OCI profile) and number (this filter). */
export const BLOCKED_SYSCALLS = [
  'add_key',
  'request_key',
  'keyctl',
  'bpf',
  'perf_event_open',
  'userfaultfd',
  'kexec_load',
  'kexec_file_load',
  'init_module',
  'finit_module',
  'delete_module',
] as const;
export type BlockedSyscall = (typeof BLOCKED_SYSCALLS)[number];

/** ioctl requests a cell may never make: terminal input injection. */
export const BLOCKED_IOCTLS = { TIOCSTI: 0x5412, TIOCLINUX: 0x541c } as const;

export const EPERM = 1;

interface ArchTable {
  audit: number;
  /** The architecture as OCI seccomp profiles name it. */
  oci: string;
  /** x86_64 marks x32 syscalls with this bit; they are refused. */
  x32Bit?: number;
  ioctl: number;
  blocked: Record<BlockedSyscall, number>;
}

const ARCHES: Partial<Record<string, ArchTable>> = {
  x64: {
    audit: 0xc000003e,
    oci: 'SCMP_ARCH_X86_64',
    x32Bit: 0x40000000,
    ioctl: 16,
    blocked: {
      add_key: 248,
      request_key: 249,
      keyctl: 250,
      bpf: 321,
      perf_event_open: 298,
      userfaultfd: 323,
      kexec_load: 246,
      kexec_file_load: 320,
      init_module: 175,
      finit_module: 313,
      delete_module: 176,
    },
  },
  arm64: {
    audit: 0xc00000b7,
    oci: 'SCMP_ARCH_AARCH64',
    ioctl: 29,
    blocked: {
      add_key: 217,
      request_key: 218,
      keyctl: 219,
      bpf: 280,
      perf_event_open: 241,
      userfaultfd: 282,
      kexec_load: 104,
      kexec_file_load: 294,
      init_module: 105,
      finit_module: 273,
      delete_module: 106,
    },
  },
};

/** The OCI name of this host's architecture, where agentcell has a table for it. */
export function seccompArch(arch: string = hostArch()): string | undefined {
  return ARCHES[arch]?.oci;
}

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_EPERM = 0x00050000 | EPERM;

/** Offsets into struct seccomp_data (little-endian hosts). */
const NR = 0;
const ARCH = 4;
const ARG1_LOW = 24;

type Op = { code: number; k: number; jt?: string; jf?: string } | { label: string };

export interface SeccompFilter {
  readonly program: Buffer;
  readonly instructions: number;
  readonly blocked: readonly string[];
}

const built = new Map<string, SeccompFilter | undefined>();

/**
 * The filter for this host's architecture, or undefined where agentcell has no table. A run
 * needs it twice (bwrap's plan loads it, the fingerprint hashes it): assembled once per process.
 */
export function buildSeccompFilter(arch: string = hostArch()): SeccompFilter | undefined {
  if (!built.has(arch)) built.set(arch, assembleFilter(arch));
  return built.get(arch);
}

function assembleFilter(arch: string): SeccompFilter | undefined {
  const table = ARCHES[arch];
  if (!table) return undefined;
  const ops: Op[] = [
    { code: LD_W_ABS, k: ARCH },
    { code: JEQ_K, k: table.audit, jf: 'deny' },
    { code: LD_W_ABS, k: NR },
  ];
  if (table.x32Bit !== undefined) ops.push({ code: JGE_K, k: table.x32Bit, jt: 'deny' });
  for (const name of BLOCKED_SYSCALLS) ops.push({ code: JEQ_K, k: table.blocked[name], jt: 'deny' });
  ops.push(
    { code: JEQ_K, k: table.ioctl, jt: 'ioctl' },
    { code: RET_K, k: RET_ALLOW },
    { label: 'ioctl' },
    { code: LD_W_ABS, k: ARG1_LOW },
    ...Object.values(BLOCKED_IOCTLS).map((request) => ({ code: JEQ_K, k: request, jt: 'deny' })),
    { code: RET_K, k: RET_ALLOW },
    { label: 'deny' },
    { code: RET_K, k: RET_EPERM },
  );
  const program = assemble(ops);
  return {
    program,
    instructions: program.length / 8,
    blocked: [
      ...Object.keys(BLOCKED_IOCTLS).map((name) => `ioctl(${name})`),
      ...BLOCKED_SYSCALLS,
      'foreign-ABI syscalls',
    ],
  };
}

/** Resolves labels to relative jumps and packs struct sock_filter {u16 code; u8 jt, jf; u32 k}. */
function assemble(ops: Op[]): Buffer {
  const labels = new Map<string, number>();
  const instructions: Exclude<Op, { label: string }>[] = [];
  for (const op of ops) {
    if ('label' in op) labels.set(op.label, instructions.length);
    else instructions.push(op);
  }
  const out = Buffer.alloc(instructions.length * 8);
  instructions.forEach((ins, index) => {
    const jump = (label: string | undefined): number => {
      if (label === undefined) return 0;
      const target = labels.get(label);
      if (target === undefined) throw new Error(`seccomp: unknown label ${label}`);
      const offset = target - index - 1;
      if (offset < 0 || offset > 255) throw new Error(`seccomp: jump to ${label} out of range`);
      return offset;
    };
    out.writeUInt16LE(ins.code, index * 8);
    out.writeUInt8(jump(ins.jt), index * 8 + 2);
    out.writeUInt8(jump(ins.jf), index * 8 + 3);
    out.writeUInt32LE(ins.k >>> 0, index * 8 + 4);
  });
  return out;
}
