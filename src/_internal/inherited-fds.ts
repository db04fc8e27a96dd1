import { closeSync, readdirSync, readFileSync } from 'node:fs';

/** O_CLOEXEC as /proc/self/fdinfo prints it (octal flags). */
const O_CLOEXEC = 0o2000000;

/**
 * Closes every descriptor above 2 this process inherited without close-on-exec, so no
 * child (bwrap and its overlay prelude, podman, docker, fuse-overlayfs, the watchdog, and
 * through them the cell) can inherit it: a directory the caller left open (`exec
 * 300</root`) would otherwise be the cell's way onto the host through /proc/self/fd.
 * Node opens all of its own descriptors close-on-exec; the ones agentcell hands a backend
 * on purpose (seccomp filter, mask source) are set up per spawn by libuv, after this.
 * Node's IPC channel (NODE_CHANNEL_FD), when there is one, is kept. Returns the closed fds.
 * Linux only: elsewhere /proc is absent and nothing is closed.
 */
export function closeInheritedFds(env: NodeJS.ProcessEnv = process.env): number[] {
  let names: string[];
  try {
    names = readdirSync('/proc/self/fdinfo');
  } catch {
    return [];
  }
  const keep = env['NODE_CHANNEL_FD'] === undefined ? undefined : Number(env['NODE_CHANNEL_FD']);
  const closed: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2 || fd === keep) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // the directory listing's own descriptor, gone by now
    }
    const flags = /^flags:\s*([0-7]+)$/m.exec(info)?.[1];
    if (flags === undefined || (parseInt(flags, 8) & O_CLOEXEC) !== 0) continue;
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // already closed
    }
  }
  return closed;
}
