import { existsSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/** Top-level system directories a host-rootfs cell sees read-only. */
const SYSTEM_DIRS = ['usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32', 'etc'] as const;

/**
 * Host files that stay hidden even though /etc is visible: password hashes, sudo
 * rules, host keys and stored credentials. A cell started by root runs with root's
 * kernel uid, so file modes alone would not keep these out.
 */
const ETC_SECRETS = [
  'shadow',
  'shadow-',
  'gshadow',
  'gshadow-',
  'sudoers',
  'sudoers.d',
  'ssl/private',
  'security/opasswd',
  'krb5.keytab',
  'docker',
  'containers/auth.json',
  'NetworkManager/system-connections',
  'wireguard',
  'ipsec.secrets',
  'machine-id',
] as const;

export type RootfsEntry = { kind: 'symlink'; target: string; link: string } | { kind: 'dir'; path: string };

/** How the host's system directories look, so the cell reproduces them (merged-/usr or not). */
export function hostSystemDirs(root = '/'): RootfsEntry[] {
  const entries: RootfsEntry[] = [];
  for (const name of SYSTEM_DIRS) {
    const path = join(root, name);
    let stat;
    try {
      stat = lstatSync(path);
    } catch {
      continue;
    }
    if (stat.isSymbolicLink()) entries.push({ kind: 'symlink', target: readlinkSync(path), link: `/${name}` });
    else if (stat.isDirectory()) entries.push({ kind: 'dir', path: `/${name}` });
  }
  return entries;
}

type EtcMask = { target: string; kind: 'file' | 'dir' };

/**
 * Secret files under the host's /etc: the fixed list and SSH host private keys, and, for a
 * root caller, everything an ordinary user could not read (a root caller's cell carries the
 * host's kernel uid 0, so file modes alone would not keep root-only files out).
 */
export function hostEtcSecrets(etc = '/etc', callerIsRoot = process.getuid?.() === 0): EtcMask[] {
  const found: EtcMask[] = [];
  const add = (path: string): void => {
    try {
      found.push({ target: path, kind: lstatSync(path).isDirectory() ? 'dir' : 'file' });
    } catch {
      // absent on this host
    }
  };
  for (const name of ETC_SECRETS) add(join(etc, name));
  const sshDir = join(etc, 'ssh');
  if (existsSync(sshDir)) {
    for (const name of safeReaddir(sshDir)) if (/^ssh_host_.*_key$/.test(name)) add(join(sshDir, name));
  }
  if (callerIsRoot) found.push(...unreadableEtcEntries(etc));
  return withoutNested(found);
}

/**
 * Entries under `etc` that an ordinary user could not read: a file without the read bit for
 * others, a directory without read and search for others (masked whole, not descended).
 * Only /etc is walked: /usr, /bin and /lib* are large and world-readable by design.
 */
export function unreadableEtcEntries(etc = '/etc'): EtcMask[] {
  const found: EtcMask[] = [];
  // On every root caller's run: readdir's entry types spare an lstat for each symlink (most of
  // /etc on Debian: alternatives, rc*.d), and names from readdir need no path.join normalising.
  const walk = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory() && !entry.isFile()) continue;
      const path = `${dir}/${entry.name}`;
      const stat = lstatSync(path, { throwIfNoEntry: false });
      if (stat === undefined) continue;
      if (stat.isDirectory()) {
        if ((stat.mode & 0o005) !== 0o005) found.push({ target: path, kind: 'dir' });
        else walk(path);
      } else if (stat.isFile() && (stat.mode & 0o004) === 0) found.push({ target: path, kind: 'file' });
    }
  };
  walk(etc);
  return found;
}

/** One mask per path, and none inside a masked directory (bwrap can't bind into its empty tmpfs). */
function withoutNested(masks: EtcMask[]): EtcMask[] {
  const dirs = masks.filter((m) => m.kind === 'dir').map((m) => m.target);
  const seen = new Set<string>();
  return masks.filter((m) => {
    if (seen.has(m.target) || dirs.some((d) => m.target.startsWith(d + '/'))) return false;
    seen.add(m.target);
    return true;
  });
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
