import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { AgentcellError } from '../../errors.js';

/**
 * The gateway's unix socket, listening before the gateway is: a cell binds the socket's
 * path when it starts, so the path must exist by then, while the gateway's own set-up (its
 * modules, logs, control socket) can go on beside the cell's. A connection made meanwhile
 * waits, paused and unread, until the gateway takes the socket; none is served before.
 */
export interface GatewaySocket {
  readonly server: Server;
  /** Hands the socket over: the connections held so far, then each new one, go to `accept`. */
  take(accept: (socket: Socket) => void): void;
  /** Stops listening and destroys the connections held (a gateway that never came up). */
  close(): void;
}

/** Listens on `path` (a leftover socket replaced, any other file refused), mode `mode`. */
export async function bindGatewaySocket(path: string, mode = 0o600): Promise<GatewaySocket> {
  clearStaleSocket(path);
  const held: Socket[] = [];
  let accept: ((socket: Socket) => void) | undefined;
  // pauseOnConnect: the gateway re-wraps each connection to read into pooled buffers.
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    if (accept) return accept(socket);
    held.push(socket);
    socket.once('close', () => {
      const at = held.indexOf(socket);
      if (at >= 0) held.splice(at, 1);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, mode);
  return {
    server,
    take(next) {
      accept = next;
      for (const socket of held.splice(0)) if (!socket.destroyed) next(socket);
    },
    close() {
      if (server.listening) server.close();
      for (const socket of held.splice(0)) socket.destroy();
    },
  };
}

/** A leftover socket from a crashed gateway is replaced; any other file is not touched. */
function clearStaleSocket(path: string): void {
  try {
    if (!lstatSync(path).isSocket())
      throw new AgentcellError('FILE_EXISTS', `${path} exists and is not a socket; not replacing it`);
    rmSync(path);
  } catch (error) {
    if (error instanceof AgentcellError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
