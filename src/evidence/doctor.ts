import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { arch, machine, platform, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { probeBackend } from '../backends/select-backend.js';
import type { BackendName } from '../_internal/vocabulary.js';
import { findExecutable } from '../_internal/find-executable.js';
import { detectCgroupSupport } from '../backends/cgroup-support.js';
import { buildSeccompFilter } from '../backends/seccomp-filter.js';

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
  /** A failed required check means agentcell cannot run cells on this host. */
  required?: boolean;
  /** The tool's version, where the check found one (the backends' probes). */
  version?: string;
}

export interface DoctorReport {
  /** Every required check passed. */
  ok: boolean;
  checks: DoctorCheck[];
}

export interface DoctorOptions {
  /** Environment for the probes (PATH to find tools, TMPDIR for the overlay trial). */
  env?: NodeJS.ProcessEnv;
}

/** The checks, in report order. */
export const DOCTOR_CHECKS = [
  'os',
  'arch',
  'kernel',
  'user-namespaces',
  'bubblewrap',
  'overlayfs-in-userns',
  'podman',
  'docker',
  'runsc',
  'git',
  'resource-limits',
  'tty-injection',
] as const;

const VERSION_TIMEOUT_MS = 3000;
const TRIAL_TIMEOUT_MS = 5000;
const SYSCTL_FILE = '/etc/sysctl.d/60-agentcell-userns.conf';

/**
 * Read-only host checks: what agentcell needs, what is missing and the exact command
 * that fixes it. Nothing on the host changes; the one trial that needs a scratch
 * directory (overlayfs) removes it before returning.
 */
export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const env = options.env ?? process.env;
  // Checks that spawn start first, so they run while the synchronous ones work.
  const userns = checkUserNamespaces(env);
  const overlay = checkOverlay(env);
  const git = checkTool(env, 'git', ['--version'], 'sudo apt-get install git   (Fedora: sudo dnf install git)');
  const sync = {
    os: checkOs(),
    arch: checkArch(),
    kernel: checkKernel(),
    bubblewrap: checkBubblewrap(env),
    podman: checkBackend('podman', 'podman', env),
    docker: checkBackend('docker', 'docker', env),
    resources: checkResourceLimits(),
    tty: checkTtyInjection(),
  };
  // gVisor runs through docker: a daemon that did not answer is not asked twice.
  const runsc = sync.docker.detail.includes('does not answer')
    ? { ...sync.docker, name: 'runsc', detail: `${sync.docker.detail}; --backend gvisor needs it` }
    : checkBackend('runsc', 'gvisor', env);
  const [userNamespaces, overlayfs, gitCheck] = await Promise.all([userns, overlay, git]);
  const checks: DoctorCheck[] = [
    sync.os,
    sync.arch,
    sync.kernel,
    userNamespaces,
    sync.bubblewrap,
    overlayfs,
    sync.podman,
    sync.docker,
    runsc,
    gitCheck,
    sync.resources,
    sync.tty,
  ];
  return { ok: checks.every((c) => !c.required || c.ok), checks };
}

function checkOs(): DoctorCheck {
  const os = platform();
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readText('/etc/os-release') ?? '')?.[1];
  const detail = pretty ? `${os} (${pretty})` : os;
  if (os === 'linux') return { name: 'os', ok: true, required: false, detail };
  return {
    name: 'os',
    ok: false,
    required: false,
    detail,
    fix: 'the bwrap backend needs Linux; use --backend podman or --backend docker (Podman machine, Docker Desktop, Colima)',
  };
}

function checkArch(): DoctorCheck {
  const detail = `${machine()} (node ${arch()})`;
  if (buildSeccompFilter())
    return { name: 'arch', ok: true, required: false, detail: `${detail}; seccomp filter available` };
  return {
    name: 'arch',
    ok: false,
    required: false,
    detail: `${detail}; agentcell has no seccomp filter for this architecture, so cells run without it`,
    fix: 'none on this host; prefer x86_64 or aarch64 for full assurance',
  };
}

function checkKernel(): DoctorCheck {
  return { name: 'kernel', ok: true, required: false, detail: release() };
}

async function checkUserNamespaces(env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const name = 'user-namespaces';
  if (platform() !== 'linux')
    return { name, ok: false, required: true, detail: 'not Linux', fix: 'use --backend podman or docker' };
  const facts: string[] = [];
  const fixes: string[] = [];
  const clone = readText('/proc/sys/kernel/unprivileged_userns_clone')?.trim();
  if (clone !== undefined) facts.push(`kernel.unprivileged_userns_clone=${clone}`);
  if (clone === '0') fixes.push(sysctlFix('kernel.unprivileged_userns_clone', '1'));
  const max = readText('/proc/sys/user/max_user_namespaces')?.trim();
  if (max !== undefined) facts.push(`user.max_user_namespaces=${max}`);
  if (max === '0') fixes.push(sysctlFix('user.max_user_namespaces', '15000'));
  const apparmor = readText('/proc/sys/kernel/apparmor_restrict_unprivileged_userns')?.trim();
  if (apparmor !== undefined) facts.push(`kernel.apparmor_restrict_unprivileged_userns=${apparmor}`);
  const bwrapPath = findExecutable('bwrap', env) ?? '/usr/bin/bwrap';
  if (apparmor === '1')
    fixes.push(
      `${sysctlFix('kernel.apparmor_restrict_unprivileged_userns', '0')}\n` +
        `or keep the restriction and let only bwrap create user namespaces:\n` +
        `  printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\nprofile bwrap ${bwrapPath} flags=(unconfined) {\\n  userns,\\n  include if exists <local/bwrap>\\n}\\n' | sudo tee /etc/apparmor.d/bwrap\n` +
        `  sudo apparmor_parser -r /etc/apparmor.d/bwrap`,
    );

  const trials: string[] = [];
  let worked = false;
  const unshare = await runCommand(['unshare', '--user', '--map-root-user', 'true'], env, TRIAL_TIMEOUT_MS);
  if (!unshare.missing) {
    trials.push(`unshare --user: ${unshare.ok ? 'ok' : `failed (${unshare.summary})`}`);
    worked ||= unshare.ok;
  }
  const bwrap = await runCommand(['bwrap', '--unshare-user', '--ro-bind', '/', '/', 'true'], env, TRIAL_TIMEOUT_MS);
  if (!bwrap.missing) {
    trials.push(`bwrap --unshare-user: ${bwrap.ok ? 'ok' : `failed (${bwrap.summary})`}`);
    worked ||= bwrap.ok;
  }
  if (trials.length === 0) trials.push('no unshare or bwrap to try with');
  const uid = process.getuid?.();
  if (uid === 0) facts.push('running as root, so unprivileged users may be refused where root is not');

  const detail = `${worked ? 'available' : 'not available'}: ${[...trials, ...facts].join('; ')}`;
  if (worked) return { name, ok: true, required: true, detail };
  return {
    name,
    ok: false,
    required: true,
    detail,
    fix:
      fixes.length > 0
        ? fixes.join('\n')
        : trials[0] === 'no unshare or bwrap to try with'
          ? 'sudo apt-get install util-linux bubblewrap'
          : 'enable unprivileged user namespaces in the kernel (CONFIG_USER_NS) or, inside a container, run it with --security-opt seccomp=unconfined or as a privileged container',
  };
}

function sysctlFix(key: string, value: string): string {
  return `sudo sysctl -w ${key}=${value} && echo '${key}=${value}' | sudo tee -a ${SYSCTL_FILE}`;
}

function checkBubblewrap(env: NodeJS.ProcessEnv): DoctorCheck {
  return { ...checkBackend('bubblewrap', 'bwrap', env), required: true };
}

/** Mounts an overlay in a throwaway user+mount namespace on a scratch directory, then removes it. */
async function checkOverlay(env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const name = 'overlayfs-in-userns';
  const fuse = findExecutable('fuse-overlayfs', env);
  const fallback = fuse
    ? `fuse-overlayfs fallback: ${fuse}${existsSync('/dev/fuse') ? '' : ' (but no /dev/fuse)'}`
    : 'no fuse-overlayfs fallback (the copy driver, a copy of the workspace per run, is the last resort)';
  if (platform() !== 'linux') return { name, ok: false, required: false, detail: 'not Linux' };
  const base = env['TMPDIR'] || tmpdir();
  let dir: string;
  try {
    dir = mkdtempSync(join(base, 'agentcell-doctor-'));
  } catch (error) {
    return {
      name,
      ok: false,
      required: false,
      detail: `cannot make a scratch directory in ${base}: ${(error as Error).message}`,
    };
  }
  let result: CommandResult;
  let leftover = '';
  try {
    const script =
      'mkdir "$1/l" "$1/u" "$1/w" "$1/m" && ' +
      'mount -t overlay overlay -o "lowerdir=$1/l,upperdir=$1/u,workdir=$1/w,userxattr" "$1/m" && ' +
      ': > "$1/m/probe"; r=$?; umount "$1/m" 2>/dev/null; exit $r';
    result = await runCommand(
      ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c', script, 'sh', dir],
      env,
      TRIAL_TIMEOUT_MS,
    );
  } finally {
    // The namespace died with the shell, so nothing is mounted here any more.
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (error) {
      leftover = `; could not remove ${dir}: ${(error as Error).message}`;
    }
  }
  const where = `upper on ${base} (${filesystemType(base)})`;
  if (result.ok)
    return {
      name,
      ok: true,
      required: false,
      detail: `overlayfs mounts in a user namespace (${where}); ${fallback}${leftover}`,
    };
  const why = result.missing ? 'unshare not found' : result.summary;
  return {
    name,
    ok: false,
    required: false,
    detail: `overlayfs cannot be mounted in a user namespace (${where}): ${why}; ${fallback}${leftover}`,
    fix: fuse
      ? 'overlay workspaces will use fuse-overlayfs; a kernel >= 5.11 mounts overlayfs in user namespaces natively'
      : 'sudo apt-get install fuse-overlayfs   (or a kernel >= 5.11, whose overlayfs mounts in user namespaces)',
  };
}

async function checkTool(env: NodeJS.ProcessEnv, tool: string, args: string[], fix: string): Promise<DoctorCheck> {
  const result = await runCommand([tool, ...args], env, VERSION_TIMEOUT_MS);
  if (result.missing) return { name: tool, ok: false, required: false, detail: 'not found', fix };
  if (!result.ok)
    return {
      name: tool,
      ok: false,
      required: false,
      detail: `${tool} ${args.join(' ')} failed: ${result.summary}`,
      fix,
    };
  return { name: tool, ok: true, required: false, detail: firstLine(result.stdout) || firstLine(result.stderr) };
}

/**
 * An engine check is its backend's own probe (src/backends): the detail and the fix a
 * failing run names too. Probes are synchronous, so each runs once the spawned checks are
 * under way.
 */
function checkBackend(name: string, backend: BackendName, env: NodeJS.ProcessEnv): DoctorCheck {
  const probe = probeBackend(backend, env);
  return {
    name,
    // Available with a fix: it runs, with less than agentcell asks (runsc without --oci-seccomp).
    ok: probe.available && probe.fix === undefined,
    required: false,
    detail: probe.detail,
    ...(probe.version !== undefined ? { version: probe.version } : {}),
    ...(probe.fix !== undefined ? { fix: probe.fix } : {}),
  };
}

function checkResourceLimits(): DoctorCheck {
  const cgroups = detectCgroupSupport();
  const detail = `timeout: enforced; ${cgroups.detail}`;
  if (cgroups.pids && cgroups.memory) return { name: 'resource-limits', ok: true, required: false, detail };
  return {
    name: 'resource-limits',
    ok: false,
    required: false,
    detail,
    fix: 'run agentcell under systemd-run --user --scope -p Delegate=yes, or give agentcell a delegated (writable) cgroup',
  };
}

function checkTtyInjection(): DoctorCheck {
  const name = 'tty-injection';
  const value = readText('/proc/sys/dev/tty/legacy_tiocsti')?.trim();
  const blocked = buildSeccompFilter()
    ? "agentcell's seccomp filter blocks TIOCSTI in cells anyway"
    : 'agentcell has no seccomp filter for this architecture, so cells given a terminal could inject input';
  if (value === '0')
    return {
      name,
      ok: true,
      required: false,
      detail: `TIOCSTI disabled on the host (dev.tty.legacy_tiocsti=0); ${blocked}`,
    };
  if (value === undefined)
    return { name, ok: true, required: false, detail: `TIOCSTI allowed on the host (kernel before 6.2); ${blocked}` };
  return {
    name,
    ok: true,
    required: false,
    detail:
      `TIOCSTI allowed on the host (dev.tty.legacy_tiocsti=${value}); ${blocked}; ` +
      `optional host hardening: sudo sysctl -w dev.tty.legacy_tiocsti=0`,
  };
}

interface CommandResult {
  ok: boolean;
  /** The executable does not exist. */
  missing: boolean;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** A short reason for a failure: the first stderr line, the exit status or the timeout. */
  summary: string;
}

/** Runs a command with no input and a hard deadline; never throws. */
function runCommand(argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<CommandResult> {
  const [file, ...args] = argv;
  // Look the tool up ourselves: an unreadable PATH entry makes spawn say EACCES, not ENOENT.
  const executable = file === undefined ? undefined : file.includes('/') ? file : findExecutable(file, env);
  return new Promise((resolve) => {
    if (executable === undefined) return resolve({ ...failed(`${file ?? 'command'} not found`), missing: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const finish = (result: CommandResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    // Its own process group, so a deadline kills grandchildren too (they would hold the pipes open).
    const child = spawn(executable, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      finish({ ok: false, missing: false, timedOut, stdout, stderr, summary: `timed out after ${timeoutMs / 1000}s` });
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', (error: NodeJS.ErrnoException) => {
      finish({ ...failed(error.message), missing: error.code === 'ENOENT' });
    });
    child.on('close', (status, signal) => {
      const summary = timedOut
        ? `timed out after ${timeoutMs / 1000}s`
        : firstLine(stderr) || (signal ? `killed by ${signal}` : `exit status ${status ?? '?'}`);
      finish({ ok: !timedOut && status === 0, missing: false, timedOut, stdout, stderr, summary });
    });
  });
}

function failed(summary: string): CommandResult {
  return { ok: false, missing: false, timedOut: false, stdout: '', stderr: '', summary };
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0]?.trim() ?? '';
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

const FILESYSTEMS: Record<number, string> = {
  0xef53: 'ext4',
  0x01021994: 'tmpfs',
  0x9123683e: 'btrfs',
  0x58465342: 'xfs',
  0x794c7630: 'overlayfs',
  0x65735546: 'fuse',
  0x2fc12fc1: 'zfs',
  0xf2f52010: 'f2fs',
};

function filesystemType(path: string): string {
  try {
    const type = statfsSync(path).type;
    return FILESYSTEMS[type] ?? `filesystem 0x${type.toString(16)}`;
  } catch {
    return 'unknown filesystem';
  }
}
