import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { LINUX_SYSCALLS } from '../../_internal/linux-syscalls.js';
import { findExecutable } from '../../_internal/find-executable.js';

/**
 * Bulk bytes moved by the kernel: a perl helper given a connection's two sockets as its fds
 * 3 and 4 moves them with splice(2) through a pipe, so the bytes never enter a process. node
 * has no splice, and a relay in user space copies every byte in and out of the gateway: on 2
 * cores, with the client and the server also running, that held a 512 MiB download through
 * the gateway to 0.75× direct over TLS and ~0.3× in cleartext (bench/work-in-cell.ts). The
 * gateway hands over only what it has already checked: a tunnel whose rules and first bytes
 * passed once it has moved PROMOTE_AFTER bytes (splice-tunnel.ts), and a forward response's
 * Content-Length body once its head is parsed and PROMOTE_AFTER or more are still to come
 * (relay-http-request.ts); short connections never pay for a process. Revoking ends it
 * (SIGTERM: the helper reports its counts and exits; a SIGKILL follows if it hasn't), and it
 * dies with the gateway's process (PR_SET_PDEATHSIG).
 *
 * perl has no splice of its own, so `syscall` makes it with the architecture's number
 * (linux-syscalls.ts); where that is unknown, or no perl is installed, tunnels stay in node.
 */

/** Bytes a tunnel moves through node (both ways) before it is handed to the kernel relay. */
export const PROMOTE_AFTER = 4 * 1024 * 1024;

/**
 * Helpers alive at once in this process; connections past these stay in node. Each is a
 * process: ~5.5 MiB RSS, of which 0.5–0.7 MiB its own, the rest perl's shared library pages.
 */
const MAX_HELPERS = 4;

/** The helper's exit when it took nothing over (too early to touch the sockets): node's relay goes on. */
const NOT_TAKEN = 3;

/** The helper's argv[0]. */
export const KERNEL_RELAY_NAME = 'agentcell-kernel-relay';

/** How long a revoked helper has to report its counts before it is killed. */
const STOP_GRACE_MS = 500;

/** What a finished helper did: nothing (the caller relays on), or the bytes it moved each way. */
export type KernelRelayResult = { taken: false } | { taken: true; up: number; down: number };

export interface KernelRelay {
  /** Settles when the helper has exited (never rejects). */
  readonly finished: Promise<KernelRelayResult>;
  /** Ends the relay now (a revoked tunnel, a closing gateway). */
  stop(): void;
}

let live = 0;
let command: { perl: string; program: string } | null | undefined;

/** perl and the program, once per process; null where the relay can't run here. */
function relayCommand(): { perl: string; program: string } | null {
  if (command !== undefined) return command;
  const numbers = LINUX_SYSCALLS[process.arch];
  const perl = findExecutable('perl', process.env, ['/usr/bin', '/bin']);
  command = numbers && perl ? { perl, program: relayProgram(numbers.splice, numbers.prctl) } : null;
  return command;
}

/**
 * Hands `client` and `upstream` to a helper, or returns undefined (none available, or
 * MAX_HELPERS busy). Without `limit` it moves both ways until both have ended (a tunnel);
 * with one it moves exactly `limit` bytes from `upstream` to `client` and leaves both open
 * (a forward proxy's response body; fewer means the upstream ended or failed first). The
 * caller has stopped reading what the helper reads, and every write it made to what the
 * helper writes has left for the kernel; it must not touch those again until the helper has
 * finished (and, when the result says `taken: false`, it goes on as before). spawn stops
 * node's reads of both sockets, as it does for any stream passed as stdio: a caller that
 * reads one of them again resumes it.
 */
export function startKernelRelay(client: Socket, upstream: Socket, limit?: number): KernelRelay | undefined {
  const relay = relayCommand();
  if (relay === null || live >= MAX_HELPERS) return undefined;
  live++;
  const child = spawn(
    relay.perl,
    ['-e', relay.program, String(process.pid), limit === undefined ? '-' : String(limit)],
    // No environment: PERL5OPT or PERL5LIB in agentcell's would run code in the helper. The
    // name is what `ps` shows (and what the sessions bench counts as agentcell's).
    { stdio: ['ignore', 'pipe', 'ignore', client, upstream], env: {}, argv0: KERNEL_RELAY_NAME },
  );
  let report = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    report += text;
  });
  const finished = new Promise<KernelRelayResult>((resolve) => {
    // 'error' alone when it never started; 'close' after the exit and the end of its output.
    child.once('error', () => resolve({ taken: false }));
    child.once('close', (code) => {
      if (code === NOT_TAKEN) return resolve({ taken: false });
      const counts = /^(\d+) (\d+)\n$/.exec(report);
      resolve({ taken: true, up: Number(counts?.[1] ?? 0), down: Number(counts?.[2] ?? 0) });
    });
  }).finally(() => {
    live--;
  });
  return {
    finished,
    stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS).unref();
    },
  };
}

/**
 * The perl program, argv PARENT_PID LIMIT; fd 3 the client, fd 4 the upstream (both
 * non-blocking, as node made them). Each way splices source → pipe → destination. LIMIT `-`:
 * both ways, and a source's end is passed on as shutdown(SHUT_WR) once its pipe is empty (a
 * half-close, as node's relay does); a number: upstream → client only, that many bytes, no
 * shutdown. An error on either side ends it. It prints "UP DOWN\n" (bytes delivered client →
 * upstream and back) and exits 0; NOT_TAKEN before it has touched the sockets.
 */
function relayProgram(splice: number, prctl: number): string {
  return [
    '$SIG{PIPE} = "IGNORE";',
    `my ($parent) = ($ARGV[0] // "") =~ /^(\\d+)$/ or exit ${NOT_TAKEN};`,
    `my ($limit) = ($ARGV[1] // "") =~ /^(-|\\d+)$/ or exit ${NOT_TAKEN};`,
    // PR_SET_PDEATHSIG 1, SIGKILL 9: no relay outlives the gateway that checked its tunnel.
    `syscall(${prctl}, 1, 9, 0, 0, 0) == 0 or exit ${NOT_TAKEN};`,
    `getppid() == $parent or exit ${NOT_TAKEN};`,
    `open(my $client, "+<&=", 3) or exit ${NOT_TAKEN};`,
    `open(my $upstream, "+<&=", 4) or exit ${NOT_TAKEN};`,
    'my @pairs = ([$upstream, $client, "down"]);',
    'unshift @pairs, [$client, $upstream, "up"] if $limit eq "-";',
    'my @ways;',
    'for my $pair (@pairs) {',
    `  pipe(my $out, my $in) or exit ${NOT_TAKEN};`,
    // F_SETPIPE_SZ 1031 (1 MiB: fewer, larger moves), else what the pipe has (F_GETPIPE_SZ 1032).
    '  my $room = fcntl($in, 1031, 1 << 20) // fcntl($in, 1032, 0) // 65536;',
    // The handles are kept with their numbers: a handle that goes out of scope closes its fd.
    '  push @ways, { from => fileno $pair->[0], to => fileno $pair->[1], sink => $pair->[1], way => $pair->[2],',
    '    pipe => [$out, $in], in => fileno $in, out => fileno $out, room => $room + 0,',
    '    want => $limit eq "-" ? -1 : $limit + 0, held => 0, moved => 0, ended => $limit eq "0", done => 0 };',
    '}',
    'my $stop = 0;',
    '$SIG{TERM} = sub { $stop = 1 };',
    // SPLICE_F_MOVE 1 | SPLICE_F_NONBLOCK 2; EAGAIN and EINTR wait for the next select.
    `sub move { my ($from, $to, $size) = @_; my $n = syscall(${splice}, $from, 0, $to, 0, $size, 3);`,
    '  return $n >= 0 ? $n : ($!{EAGAIN} || $!{EINTR}) ? -1 : undef }',
    'LOOP: until ($stop) {',
    '  my ($read, $write) = ("", "");',
    '  my $open = 0;',
    '  for my $w (@ways) {',
    '    next if $w->{done};',
    '    $open++;',
    '    vec($read, $w->{from}, 1) = 1 if !$w->{ended} && $w->{held} < $w->{room};',
    '    vec($write, $w->{to}, 1) = 1 if $w->{held} > 0;',
    '  }',
    '  last unless $open;',
    '  my $ready = select(my $readable = $read, my $writable = $write, undef, undef);',
    '  next if $ready < 0 && $!{EINTR};',
    '  last if $ready < 0;',
    '  for my $w (@ways) {',
    '    next if $w->{done};',
    '    if (!$w->{ended} && vec($readable, $w->{from}, 1)) {',
    '      my $size = $w->{room} - $w->{held};',
    '      $size = $w->{want} if $w->{want} >= 0 && $w->{want} < $size;',
    '      my $n = move($w->{from}, $w->{in}, $size);',
    '      last LOOP unless defined $n;',
    '      if ($n == 0) { $w->{ended} = 1 }',
    '      elsif ($n > 0) { $w->{held} += $n; $w->{want} -= $n if $w->{want} > 0; $w->{ended} = 1 if $w->{want} == 0 }',
    '    }',
    '    if ($w->{held} > 0) {',
    '      my $n = move($w->{out}, $w->{to}, $w->{held});',
    '      last LOOP unless defined $n;',
    '      if ($n > 0) { $w->{held} -= $n; $w->{moved} += $n }',
    '    }',
    '    if ($w->{ended} && $w->{held} == 0) { shutdown($w->{sink}, 1) if $limit eq "-"; $w->{done} = 1 }',
    '  }',
    '}',
    'my %moved = (up => 0, down => 0);',
    '$moved{$_->{way}} = $_->{moved} for @ways;',
    'syswrite(STDOUT, "$moved{up} $moved{down}\\n");',
    'exit 0;',
  ].join('\n');
}
