import { LINUX_SYSCALLS } from '../../_internal/linux-syscalls.js';
import { LISTENER_ADOPTED } from '../../backends/receive-cell-listener.js';

/**
 * The handoff (cell-bridge.ts `handoff`) without node: perl's core Socket module makes the
 * 127.0.0.1 listener and one sendmsg(2) hands it to agentcell with SCM_RIGHTS over the IPC
 * channel agentcell's spawn made (NODE_CHANNEL_FD). agentcell reads only the descriptor that
 * comes with the first read, never the bytes (receive-cell-listener.ts), so what node's
 * protocol would wrap around it is not needed. It then waits for agentcell's reply line and
 * exits 0 when the listener was adopted, 1 otherwise (the prelude then exits 125). perl starts
 * in ~3 ms where node takes ~30, and this is on every gateway run's critical path.
 *
 * perl has no sendmsg of its own, so `syscall` makes it with hand-packed structs: the layouts
 * of struct msghdr, iovec and cmsghdr are those of 64-bit Linux, and the syscall number is
 * the architecture's (linux-syscalls.ts). Other architectures keep node's handoff.
 */

/**
 * The helper's exit when it handed nothing over (no Socket module, no channel, the listener or
 * the sendmsg failed): the prelude then tries node's bridge. Any other failure comes after
 * agentcell may have the listener, and fails the cell closed.
 */
export const NOT_HANDED = 3;

/** How long the helper waits for agentcell's reply, as cell-bridge.ts's HANDOFF_TIMEOUT_MS. */
const REPLY_TIMEOUT_S = 10;

/**
 * The perl program (no single quote in it: the prelude quotes it so), argv PORT; undefined
 * where the structs or the syscall number are not known.
 */
export function perlHandoffProgram(arch: NodeJS.Architecture = process.arch): string | undefined {
  const sendmsg = LINUX_SYSCALLS[arch]?.sendmsg;
  if (sendmsg === undefined) return undefined;
  return [
    // No module at compile time (not even strict): a perl without Socket (some distributions
    // ship it apart) exits NOT_HANDED instead of failing to compile.
    `eval { require Socket; 1 } or exit ${NOT_HANDED};`,
    `alarm ${REPLY_TIMEOUT_S};`,
    `my ($ch) = ($ENV{NODE_CHANNEL_FD} // "") =~ /^(\\d+)$/ or exit ${NOT_HANDED};`,
    `my ($port) = ($ARGV[0] // "") =~ /^(\\d+)$/ or exit ${NOT_HANDED};`,
    `socket(my $s, Socket::PF_INET(), Socket::SOCK_STREAM(), 0) or exit ${NOT_HANDED};`,
    `setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_REUSEADDR(), 1) or exit ${NOT_HANDED};`,
    `bind($s, Socket::pack_sockaddr_in($port, Socket::inet_aton("127.0.0.1"))) or exit ${NOT_HANDED};`,
    `listen($s, 511) or exit ${NOT_HANDED};`,
    // One byte of data carries the descriptor: iovec {base, len}; cmsghdr {len 20, SOL_SOCKET,
    // SCM_RIGHTS 1, fd} padded to 24; msghdr {name 0, namelen 0, iov, 1, control, 24, flags 0}.
    'my $data = "\\n";',
    'my $iov = pack("p Q", $data, 1);',
    'my $cmsg = pack("Q l l l x4", 20, Socket::SOL_SOCKET(), 1, fileno $s);',
    'my $msg = pack("Q L x4 p Q p Q l x4", 0, 0, $iov, 1, $cmsg, length $cmsg, 0);',
    // Past this point the listener is agentcell's to take: any failure is the handoff's (exit 1).
    `syscall(${sendmsg}, $ch + 0, $msg, 0) == 1 or exit ${NOT_HANDED};`,
    'open(my $c, "<&=", $ch) or exit 1;',
    'my $reply = "";',
    'while ($reply !~ /\\n/) { sysread($c, $reply, 4096, length $reply) or last }',
    `exit($reply =~ /"${LISTENER_ADOPTED.agentcell}"/ ? 0 : 1);`,
  ].join('\n');
}
