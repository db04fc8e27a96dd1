import type { Socket } from 'node:net';

/** Settles once `socket` has closed (at once if it already has). */
export function socketClosed(socket: Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}
