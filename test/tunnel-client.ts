import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';

/** What the egress relay tests drive a gateway's tunnels with. */

/** Writes `data` in odd-sized pieces, honouring backpressure, then ends. */
export function writeAll(socket: Socket, data: Buffer): void {
  let offset = 0;
  const write = (): void => {
    while (offset < data.length) {
      const piece = data.subarray(offset, Math.min(data.length, offset + 7_919 + (offset % 50_000)));
      offset += piece.length;
      if (!socket.write(piece)) return void socket.once('drain', write);
    }
    socket.end();
  };
  write();
}

/**
 * Reads until the end, pausing `stallMs` every `stallEvery` bytes (so the relay's writes
 * back up and its reading stops and starts); resolves with the count and the hash.
 */
export function readSlowly(
  socket: Socket | IncomingMessage,
  stallEvery: number,
  stallMs: number,
): Promise<{ received: number; hash: string }> {
  const hash = createHash('sha256');
  let received = 0;
  return new Promise((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
      if (Math.floor(received / stallEvery) !== Math.floor((received - chunk.length) / stallEvery)) {
        socket.pause();
        setTimeout(() => socket.resume(), stallMs);
      }
    });
    socket.once('end', () => resolve({ received, hash: hash.digest('hex') }));
    socket.once('error', reject);
    socket.resume();
  });
}

/** A CONNECT tunnel to 127.0.0.1:`port` through the gateway at `gatewayPort`, paused after its 200. */
export function openTunnel(gatewayPort: number, port: number, token: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(gatewayPort, '127.0.0.1');
    let head = Buffer.alloc(0);
    const onData = (data: Buffer): void => {
      head = Buffer.concat([head, data]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      socket.pause();
      if (!head.subarray(0, 12).toString().startsWith('HTTP/1.1 200')) return reject(new Error(head.toString()));
      if (head.length > end + 4) socket.unshift(head.subarray(end + 4));
      resolve(socket);
    };
    socket.on('data', onData);
    socket.once('error', reject);
    const auth = Buffer.from(`agentcell:${token}`).toString('base64');
    socket.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
  });
}
