import { closeSync, openSync } from 'node:fs';
import { connect, type Server, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { AgentcellError } from '../errors.js';

/** A unix socket path is at most 107 bytes on Linux. */
const MAX_SOCKET_PATH = 100;

/** The session's control socket: in its own dir (0700), never mounted into a cell. */
export function controlSocketPath(dir: string): string {
  return join(dir, 'control.sock');
}

/**
 * Runs `use` with a path that reaches `path`: itself when short enough, else through an
 * open descriptor of its directory (`/proc/self/fd/N/NAME`), so the socket stays in the
 * session's dir however deep the state dir is.
 */
async function withReachablePath<T>(path: string, use: (reachable: string) => Promise<T>): Promise<T> {
  if (Buffer.byteLength(path) <= MAX_SOCKET_PATH) return use(path);
  const fd = openSync(dirname(path), 'r');
  try {
    return await use(`/proc/self/fd/${fd}/${basename(path)}`);
  } finally {
    closeSync(fd);
  }
}

export function listenControl(server: Server, path: string): Promise<void> {
  return withReachablePath(
    path,
    (reachable) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(reachable, () => {
          server.off('error', reject);
          resolve();
        });
      }),
  );
}

export function connectControl(path: string, session: string): Promise<Socket> {
  return withReachablePath(
    path,
    (reachable) =>
      new Promise<Socket>((resolve, reject) => {
        const socket = connect(reachable);
        socket.once('connect', () => {
          socket.off('error', fail);
          resolve(socket);
        });
        const fail = (cause: Error): void =>
          reject(
            new AgentcellError(
              'SESSION_NOT_RUNNING',
              `session ${session} is not running (its supervisor does not answer: ${(cause as NodeJS.ErrnoException).code ?? cause.message}); agentcell session show ${session}`,
              { cause },
            ),
          );
        socket.once('error', fail);
      }),
  );
}
