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

/** Existing secret files under the host's /etc, including SSH host private keys. */
export function hostEtcSecrets(etc = '/etc'): { target: string; kind: 'file' | 'dir' }[] {
  const found: { target: string; kind: 'file' | 'dir' }[] = [];
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
  return found;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
