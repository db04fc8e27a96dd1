import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { findExecutable } from '../_internal/find-executable.js';
import { neutralRuntimeDir } from '../_internal/neutral-dir.js';
import type { CellSpec, ExtraMount } from './backend.js';
import { LINUX_SYSCALLS, type LinuxSyscalls } from '../_internal/linux-syscalls.js';

/**
 * A root caller's bwrap cell under an unprivileged host uid (DESIGN.md invariant 10). bwrap
 * maps the cell's uid onto the uid that starts it, so bwrap is started as uid 0 of a user
 * namespace whose ids are root's subordinate range (`root:BASE:COUNT` in /etc/subuid and
 * /etc/subgid): every process of the cell is host uid BASE, without capabilities there.
 *
 * The cell still works on root's files through idmapped mounts (Linux >= 5.12; tmpfs >= 6.3),
 * made by host root in a private mount namespace before anything else runs: the workspace,
 * the cell's state dir (overlay layers, upper, work) and a directory rootfs are cloned with
 * the map "on disk 0.. ↔ host BASE..", so the cell owns what root owns there and writes it back
 * as root on disk (the upper layer, and so `accept`, are as before). The clones, and one of the
 * neutral runtime dir (egress socket, staged files), sit on a fresh 0755 tmpfs over that dir:
 * the cell's uid can reach them, where root's own dirs above (`/root`, 0700) stay closed.
 * The overlays are then mounted by host root (an overlay in the cell's user namespace refuses
 * idmapped layers: EPERM) over the idmapped layers (its own writes land as on-disk COUNT).
 * So is a read-only directory `[[mount]]` outside those. Nothing else is idmapped: host system
 * dirs are read as "other", and a rw `[[mount]]` is written as host uid BASE. Node has no mount_setattr or unshare, so a short perl program
 * (perl-base is Essential on Debian) makes the syscalls.
 *
 * A root caller's OCI cell (oci-backend.ts) binds the same clones, staged in the host's mount
 * namespace where the engine resolves its binds ({@link hostStagePrefix}).
 */
export interface UidShift {
  /** The first host uid and gid of the range; the cell's processes run as these. */
  uid: number;
  gid: number;
  count: number;
  perl: string;
  unshare: string;
  /**
   * Where the stage tmpfs is mounted: over the neutral runtime dir in the cell's own mount
   * namespace (bwrap), or an OCI run's own dir in the host's (see {@link hostStagePrefix}).
   */
  stage: string;
  /** Host paths cloned onto the stage, by name. */
  sources: { name: string; path: string }[];
}

/**
 * `idmap BASE COUNT STAGE NAME=PATH... -- CMD`: clones each PATH idmapped, mounts a tmpfs at
 * STAGE and moves each clone to STAGE/NAME, then execs CMD (still host root).
 * `userns BASE COUNT -- CMD`: enters a new user namespace that a forked child maps
 * (0 → BASE, COUNT ids; no host id outside the range), becomes its uid 0 and execs CMD.
 * A failure exits 125 with one line on stderr.
 */
function helperScript(n: LinuxSyscalls): string {
  return `use strict;
my ($mode, $base, $count) = splice(@ARGV, 0, 3);
my @specs; while (@ARGV && $ARGV[0] ne '--') { push @specs, shift @ARGV } shift @ARGV;
sub fail { print STDERR "agentcell-uid: $_[0]\\n"; exit 125 }
sub write_maps { my ($pid, $extra) = @_;
  for my $f ('uid_map', 'gid_map') { open(my $m, '>', "/proc/$pid/$f") or fail("$f: $!");
    print $m "0 $base $count\\n$extra"; close $m or fail("cannot write the cell's $f: $!") } }
pipe(my $r1, my $w1) or fail("pipe: $!"); pipe(my $r2, my $w2) or fail("pipe: $!");
if ($mode eq 'idmap') {
  my $stage = shift @specs;
  my $pid = fork() // fail("fork: $!");
  if ($pid == 0) { syscall(${n.unshare}, 0x10000000) == 0 or exit 1; syswrite($w1, 'x'); sysread($r2, my $b, 1); exit 0 }
  sysread($r1, my $b, 1) == 1 or fail("cannot make the idmap's user namespace");
  # host root's own writes (the overlay's work dir, whiteouts) land as on-disk id COUNT
  write_maps($pid, "$count 0 1\\n");
  open(my $ns, '<', "/proc/$pid/ns/user") or fail("user namespace: $!");
  syswrite($w2, 'x'); waitpid($pid, 0);
  my @clones;
  for my $spec (@specs) {
    my ($name, $path) = split(/=/, $spec, 2); my $empty = '';
    my $fd = syscall(428, -100, $path, 1 | 0x80000 | 0x8000);
    $fd >= 0 or fail("cannot clone the mount of $path: $!");
    my $attr = pack('QQQQ', 0x00100000, 0, 0, fileno($ns));
    syscall(442, $fd, $empty, 0x1000 | 0x8000, $attr, 32) == 0
      or fail("cannot idmap $path (its filesystem may not support idmapped mounts): $!");
    push @clones, [$name, $fd, -d $path];
  }
  my ($src, $type, $opts) = ('agentcell', 'tmpfs', 'mode=0755');
  syscall(${n.mount}, $src, $stage, $type, 0, $opts) == 0 or fail("cannot mount a tmpfs at $stage: $!");
  for my $c (@clones) { my ($name, $fd, $dir) = @$c; my $to = "$stage/$name"; my $empty = '';
    if ($dir) { mkdir $to or fail("mkdir $to: $!") } else { open(my $t, '>', $to) or fail("$to: $!"); close $t }
    syscall(429, $fd, $empty, -100, $to, 0x4) == 0 or fail("cannot mount the idmapped $name at $to: $!") }
} elsif ($mode eq 'userns') {
  my $parent = $$; my $pid = fork() // fail("fork: $!");
  if ($pid == 0) { sysread($r1, my $b, 1) == 1 or exit 1; write_maps($parent, ''); syswrite($w2, 'x'); exit 0 }
  syscall(${n.unshare}, 0x10000000) == 0 or fail("cannot make the cell's user namespace: $!");
  syswrite($w1, 'x'); sysread($r2, my $b, 1) == 1 or fail("cannot map the cell's ids");
  waitpid($pid, 0);
  syscall(${n.setgroups}, 0, 0) == 0 or fail("setgroups: $!");
  syscall(${n.setresgid}, 0, 0, 0) == 0 or fail("setresgid: $!");
  syscall(${n.setresuid}, 0, 0, 0) == 0 or fail("setresuid: $!");
} else { fail("unknown mode $mode") }
close $_ for ($r1, $w1, $r2, $w2);
exec { $ARGV[0] } @ARGV or fail("cannot run $ARGV[0]: $!");
`;
}

/** root's subordinate range (`root:BASE:COUNT`, or `0:…`) in `file`, at most 65536 ids. */
export function rootRange(file: string): { base: number; count: number } | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [user, base, count] = line.trim().split(':');
    if ((user !== 'root' && user !== '0') || !/^\d+$/.test(base ?? '') || !/^\d+$/.test(count ?? '')) continue;
    const b = Number(base);
    const c = Math.min(Number(count), 65536);
    if (b > 0 && c > 0) return { base: b, count: c };
  }
  return undefined;
}

/**
 * The shift for a root caller's cell, or why there is none (then the cell stays host uid 0,
 * labeled). Reads the host; changes nothing.
 */
export function planUidShift(
  spec: DeepReadonly<CellSpec>,
  stageAt: (neutral: string) => string = (neutral) => neutral,
): UidShift | { none: string } {
  const numbers = LINUX_SYSCALLS[process.arch];
  if (!numbers) return { none: `no uid-shift helper for ${process.arch}` };
  const uids = rootRange('/etc/subuid');
  const gids = rootRange('/etc/subgid');
  if (!uids || !gids)
    return { none: 'root has no subordinate ids: add `root:165536:65536` to /etc/subuid and /etc/subgid' };
  const perl = findExecutable('perl', process.env, ['/usr/bin', '/bin']);
  const unshare = findExecutable('unshare', process.env, ['/usr/bin', '/bin']);
  if (!perl || !unshare) return { none: 'perl and unshare (util-linux) make the idmapped mounts: install both' };
  const neutral = neutralRuntimeDir();
  if (!neutral) return { none: 'no tmpfs at /dev/shm to stage the cell’s mounts on' };
  const stage = stageAt(neutral);
  const prefixes = [
    spec.workspace.overlay?.argvPrefix ?? [],
    spec.rootfs.kind === 'directory' ? (spec.rootfs.overlay?.argvPrefix ?? []) : [],
  ];
  // fuse-overlayfs runs as root without allow_other: the cell's uid could not open its mount.
  if (prefixes.some((p) => p.some((a) => a.includes('fuse-overlayfs'))))
    return { none: 'the cell keeps its layers with fuse-overlayfs' };
  const sources = [
    { name: 'shm', path: neutral },
    { name: 'workspace', path: spec.workspace.path },
  ];
  const cellDir = spec.workspace.overlay
    ? dirname(spec.workspace.overlay.merged)
    : spec.rootfs.kind === 'directory' && spec.rootfs.overlay
      ? dirname(dirname(spec.rootfs.overlay.merged))
      : undefined;
  if (cellDir) sources.push({ name: 'cell', path: cellDir });
  if (spec.rootfs.kind === 'directory') sources.push({ name: 'rootfs', path: spec.rootfs.path });
  // A read-only `[[mount]]` of a directory the cell's uid could not reach (say under a 0700
  // dir of root's) is cloned like the workspace, and so is agentcell's own rw state (the
  // agent's home); a small file is staged as a copy anyway, and a user's rw mount stays
  // unmapped (the cell writes there as its own host uid).
  // A mount that holds the runtime dir (say of /dev/shm) is bound as it is: idmapped, the cell
  // would own root's 0700 dirs there (other cells' stages and sockets), and cloning it would
  // take in stages that are idmapped already, which the kernel refuses.
  const holdsRuntime = (path: string): boolean => path === '/' || neutral.startsWith(`${path}/`);
  spec.mounts.forEach((mount, i) => {
    const covered = sources.some((s) => mount.source === s.path || mount.source.startsWith(`${s.path}/`));
    // agentcell's own dir may be made between plan and run (a login's agent home, a toolchain).
    if (covered || holdsRuntime(mount.source)) return;
    if (mount.own === true || (mount.mode === 'ro' && (mount.directory === true || isDirectory(mount.source))))
      sources.push({ name: `mount${i}`, path: mount.source });
  });
  if (uids.base !== gids.base || uids.count !== gids.count)
    return { none: 'root’s subordinate uid and gid ranges differ in /etc/subuid and /etc/subgid' };
  return { uid: uids.base, gid: gids.base, count: uids.count, perl, unshare, stage, sources };
}

function isDirectory(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
}

/** Where the cell's setup finds a host path: on the stage when it is (under) a staged source. */
export function stagedPath(shift: DeepReadonly<UidShift>, path: string): string {
  let best: DeepReadonly<{ name: string; path: string }> | undefined;
  for (const s of shift.sources)
    if ((path === s.path || path.startsWith(`${s.path}/`)) && s.path.length > (best?.path.length ?? -1)) best = s;
  return best ? `${shift.stage}/${best.name}${path.slice(best.path.length)}` : path;
}

/**
 * Where a shifted cell binds a `[[mount]]` from: the stage, unless it is a user's rw mount,
 * which is not idmapped (the cell writes there as its own host uid); agentcell's own rw dirs
 * (the agent's home, a run dir under the neutral runtime dir) are staged.
 */
export function shiftedMountSource(shift: DeepReadonly<UidShift>, mount: DeepReadonly<ExtraMount>): string {
  const neutral = shift.sources.find((s) => s.name === 'shm')?.path;
  const agentcells =
    mount.own === true ||
    (neutral !== undefined && (mount.source === neutral || mount.source.startsWith(`${neutral}/`)));
  return mount.mode === 'rw' && !agentcells ? mount.source : stagedPath(shift, mount.source);
}

/** Put before the overlay wrappers: host root clones and idmaps the sources onto the stage, in a mount namespace of the cell's. */
export function stagePrefix(shift: DeepReadonly<UidShift>): string[] {
  const numbers = LINUX_SYSCALLS[process.arch];
  if (!numbers) throw new Error(`no uid-shift helper for ${process.arch}`);
  return [
    shift.unshare,
    '--mount',
    '--propagation',
    'private',
    '--',
    shift.perl,
    '-e',
    helperScript(numbers),
    'idmap',
    String(shift.uid),
    String(shift.count),
    shift.stage,
    ...shift.sources.map((s) => `${s.name}=${s.path}`),
    '--',
  ];
}

/**
 * For an OCI engine, which binds its sources in the host's mount namespace (an engine's
 * daemon or conmon can't be put in ours): the stage is made there, at its own dir outside
 * the neutral runtime dir (a recursive clone of that dir must find no idmapped mount in it),
 * and held for the run. Put before a held command (see hold-host-mount.ts) that exits 0 once
 * released: then the stage is detached; otherwise (agentcell died, the engine may still be
 * binding it) it stays until the cell's next run detaches it before staging again, with each
 * of `leftovers` still mounted (a killed run's overlay: a recursive clone would carry it).
 */
export function hostStagePrefix(shift: DeepReadonly<UidShift>, leftovers: readonly string[]): string[] {
  const stagePart = stagePrefix(shift);
  const hold = [
    'stage=$0; n=$1; shift',
    'while [ "$n" -gt 0 ]; do',
    '  if mountpoint -q "$1"; then umount --lazy "$1" || exit 125; fi; shift; n=$((n - 1))',
    'done',
    '[ -d "$stage" ] || mkdir -m 0700 "$stage" || exit 125',
    'if mountpoint -q "$stage"; then umount --lazy "$stage" || exit 125; fi',
    // 0: released; 125: nothing was set up for an engine to bind (a failed clone or mount).
    '"$@"; status=$?',
    'if [ $status -eq 0 ] || [ $status -eq 125 ]; then',
    '  ! mountpoint -q "$stage" || umount --lazy "$stage"; rmdir "$stage" 2>/dev/null',
    'fi',
    'exit $status',
  ].join('\n');
  return [
    '/bin/sh',
    '-c',
    hold,
    shift.stage,
    String(leftovers.length),
    ...leftovers,
    ...stagePart.slice(stagePart.indexOf(shift.perl)),
  ];
}

/**
 * Detaches the stages under `parent` (see {@link hostStagePrefix}) whose workspace or cell
 * dir is gone (a killed run's cell removed since): no next run of theirs would. A live
 * stage's clones are of existing dirs; a deleted dir shows no links.
 */
export function detachOrphanStages(parent: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    const stage = join(parent, name);
    const gone = ['workspace', 'cell'].some((s) => statSync(join(stage, s), { throwIfNoEntry: false })?.nlink === 0);
    if (!gone || spawnSync('umount', ['--lazy', stage], { stdio: 'ignore', timeout: 10_000 }).status !== 0) continue;
    try {
      rmdirSync(stage);
    } catch {
      // left for the next sweep: an empty dir costs nothing
    }
  }
}

/** Put right before bwrap: the rest runs as uid 0 of the cell's user namespace, host uid `shift.uid`. */
export function userNamespacePrefix(shift: DeepReadonly<UidShift>): string[] {
  const numbers = LINUX_SYSCALLS[process.arch];
  if (!numbers) throw new Error(`no uid-shift helper for ${process.arch}`);
  return [shift.perl, '-e', helperScript(numbers), 'userns', String(shift.uid), String(shift.count), '--'];
}

/** An overlay wrapper rewritten for a shifted cell: run by host root (no user namespace of its own), on the staged paths. */
export function shiftedWrapper(shift: DeepReadonly<UidShift>, prefix: readonly string[]): string[] {
  const end = prefix.indexOf('--');
  return prefix
    .filter((a, i) => !(i < end && (a === '--user' || a === '--map-root-user')))
    .map((a) => (a.startsWith('/') ? stagedPath(shift, a) : a));
}
