import { spawn } from 'node:child_process';
import { AgentcellError } from '../errors.js';
import { HOST_MOUNT_READY, HOST_MOUNT_RELEASE } from '../_internal/held-mount-protocol.js';

export interface HeldMount {
  /** Ends the hold (the command unmounts) and waits until it has. */
  release(): Promise<void>;
}

/**
 * Starts a plan's `hostMount` command and resolves once it reports the mount in place.
 * The command holds the mount until `release()` tells it to unmount. It runs in its own
 * process group, so a Ctrl-C at the terminal cannot end it before it has unmounted.
 */
export function holdHostMount(argv: readonly string[], env: Record<string, string>): Promise<HeldMount> {
  const [command, ...args] = argv;
  if (command === undefined) throw new Error('empty host mount command');
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const exited = new Promise<void>((done) => child.once('close', () => done()));
    let stdout = '';
    let stderr = '';
    let ready = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (ready || !stdout.split('\n').includes(HOST_MOUNT_READY)) return;
      ready = true;
      resolve({
        release: async () => {
          child.stdin.end(`${HOST_MOUNT_RELEASE}\n`);
          await exited;
        },
      });
    });
    child.once('error', reject);
    child.once('close', (code) => {
      if (ready) return;
      const reason = stderr.trim() || `exit ${String(code)}`;
      // A root caller's idmapped stage (uid-shift.ts) failed: no workspace mode avoids it.
      const fix = reason.includes('agentcell-uid:')
        ? "a root caller's cell reads the workspace and agentcell's state through idmapped mounts: keep both on a filesystem that has them (ext4, xfs, btrfs, tmpfs on Linux >= 6.3), or run agentcell as an ordinary user"
        : 'an overlay workspace on docker needs root on the host (or rootless podman): use --workspace-mode direct or --backend bwrap';
      reject(new AgentcellError('BACKEND_UNAVAILABLE', `cannot prepare the cell on the host (${reason}); ${fix}`));
    });
  });
}
