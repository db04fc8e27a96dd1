import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExtraMount } from '../backends/backend.js';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { CELL_BRIDGE_NODE, CELL_BRIDGE_SCRIPT, CELL_EGRESS_SOCKET } from '../egress/cell/proxy-environment.js';
import { cellDir } from './cell-store.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { removeTrees } from '../_internal/remove-trees.js';

/** A cell's own SSH identity: the public half is for the user to register, the private half only ever in that cell. */
export interface CellSshKey {
  cell: string;
  /** `ssh-ed25519 AAAA… agentcell-cell-NAME` */
  publicKey: string;
  /** SHA256 fingerprint, as ssh-keygen -l prints it. */
  fingerprint: string;
  privateKeyPath: string;
  created: boolean;
}

const KEY = 'id_ed25519';
const SYSTEM_SSH_CONFIG = '/etc/ssh/ssh_config';

/**
 * The ssh client config a gateway cell gets as its /etc/ssh/ssh_config (ssh finds `~`
 * through the passwd entry, which need not be the cell's HOME, so not ~/.ssh/config):
 * every host goes through the gateway (a CONNECT tunnel opened by the bridge script, with
 * the run's token), with the cell's key. The cell's home is new each run, so host keys
 * are trusted on first use within a run; pin them with a `[[mount]]` of a known_hosts file.
 */
const SSH_CONFIG = [
  'Host *',
  `  ProxyCommand /bin/sh -c 'n=${CELL_BRIDGE_NODE}; [ -x "$n" ] || n=node; exec "$n" ${CELL_BRIDGE_SCRIPT} connect ${CELL_EGRESS_SOCKET} "$0" "$1"' %h %p`,
  `  IdentityFile \${HOME}/.ssh/${KEY}`,
  '  IdentitiesOnly yes',
  '  UserKnownHostsFile ${HOME}/.ssh/known_hosts',
  '  StrictHostKeyChecking accept-new',
  '',
].join('\n');

/** `<cellDir>/ssh`, 0700: the key pair and the cell's ssh config. */
export function cellSshDir(paths: AgentcellPaths, cell: string): string {
  return join(cellDir(paths, cell), 'ssh');
}

/** The cell's key, made with ssh-keygen on first use (private half 0600). */
export function ensureCellSshKey(paths: AgentcellPaths, cell: string): CellSshKey {
  const dir = cellSshDir(paths, cell);
  const privateKeyPath = join(dir, KEY);
  let created = false;
  if (!existsSync(privateKeyPath)) {
    makeDirs(dir, 0o700);
    chmodSync(dir, 0o700);
    // Made in a scratch dir, then written whole (public half first): a half-made key is never bound into a cell.
    const scratch = mkdtempSync(join(dir, '.keygen-'));
    try {
      const made = join(scratch, KEY);
      const keygen = spawnSync(
        'ssh-keygen',
        ['-q', '-t', 'ed25519', '-N', '', '-C', `agentcell-cell-${cell}`, '-f', made],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      if (keygen.error || keygen.status !== 0)
        throw new AgentcellError(
          'BACKEND_UNAVAILABLE',
          `ssh-keygen could not make the cell's key: ${keygen.error?.message ?? keygen.stderr.trim()} (sudo apt-get install openssh-client)`,
        );
      writeFileAtomic(join(dir, 'config'), SSH_CONFIG, 0o600);
      writeFileAtomic(`${privateKeyPath}.pub`, readFileSync(`${made}.pub`), 0o644);
      writeFileAtomic(privateKeyPath, readFileSync(made), 0o600);
    } finally {
      removeTrees([scratch]);
    }
    created = true;
  }
  const publicKey = readFileSync(`${privateKeyPath}.pub`, 'utf8').trim();
  return { cell, publicKey, fingerprint: fingerprintOf(`${privateKeyPath}.pub`), privateKeyPath, created };
}

function fingerprintOf(publicKeyPath: string): string {
  const r = spawnSync('ssh-keygen', ['-l', '-f', publicKeyPath], { encoding: 'utf8' });
  return r.status === 0 ? (r.stdout.split(' ')[1] ?? '') : '';
}

/**
 * The binds that give a cell its key as ~/.ssh/id_ed25519 (read-only) and, behind the
 * gateway, the ssh config as /etc/ssh/ssh_config (where the rootfs has one to cover);
 * none when the cell has no key yet (`agentcell pubkey` makes it).
 */
export function cellSshMounts(
  paths: AgentcellPaths,
  cell: string,
  home: string,
  options: { gateway: boolean; rootfs: string },
): ExtraMount[] {
  const dir = cellSshDir(paths, cell);
  if (!existsSync(join(dir, KEY))) return [];
  const mounts: ExtraMount[] = [KEY, `${KEY}.pub`].map((file) => ({
    source: join(dir, file),
    target: join(home, '.ssh', file),
    mode: 'ro',
  }));
  if (options.gateway && existsSync(join(options.rootfs, SYSTEM_SSH_CONFIG)))
    mounts.push({ source: join(dir, 'config'), target: SYSTEM_SSH_CONFIG, mode: 'ro' });
  return mounts;
}
