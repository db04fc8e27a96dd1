import type { Socket } from 'node:net';

/**
 * Settles once every write made to `socket` so far has left for the kernel (at once if none
 * is pending, or the socket is gone): an empty write's callback comes after those before it.
 */
export function socketFlushed(socket: Socket): Promise<void> {
  if (socket.destroyed || socket.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => void socket.write(Buffer.alloc(0), () => resolve()));
}
