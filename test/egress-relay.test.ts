import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createEgressGateway, type EgressGateway } from '../src/egress/egress-gateway.js';

/**
 * The download direction of a tunnel reuses a few buffers (pooled-relay.ts): a buffer
 * reused before its write left would corrupt the stream. A server pushes 48 MiB of random
 * bytes through the gateway to a client that reads slowly (so writes back up and reading
 * stops and starts many times); the client's hash must equal the server's.
 */

const TOKEN = 'relay-test-token-0123456789';
const SIZE = 48 * 1024 * 1024;
const STALL_EVERY = 4 * 1024 * 1024;

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function tunnel(gatewayPort: number, port: number): Promise<Socket> {
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
    const auth = Buffer.from(`agentcell:${TOKEN}`).toString('base64');
    socket.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
  });
}

describe('tunnel relay: bytes arrive intact under backpressure', () => {
  let source: Server;
  let sourcePort: number;
  let gateway: EgressGateway;
  let gatewayPort: number;
  const data = randomBytes(SIZE);
  const expected = createHash('sha256').update(data).digest('hex');

  before(async () => {
    // Writes in odd-sized pieces, then ends: the client must see every byte, then the end.
    source = createServer((socket) => {
      let offset = 0;
      const write = (): void => {
        while (offset < SIZE) {
          const piece = data.subarray(offset, Math.min(SIZE, offset + 7_919 + (offset % 50_000)));
          offset += piece.length;
          if (!socket.write(piece)) return void socket.once('drain', write);
        }
        socket.end();
      };
      write();
    });
    sourcePort = await listen(source);
    gateway = createEgressGateway({
      rules: { allow: [`127.0.0.1:${sourcePort}`] },
      token: TOKEN,
      tcp: { port: 0 },
    });
    gatewayPort = (await gateway.listen()).tcp?.port ?? 0;
  });
  after(async () => {
    await gateway.close();
    source.close();
  });

  it('delivers 48 MiB downloaded through a slow reader byte for byte, then the end', async () => {
    const socket = await tunnel(gatewayPort, sourcePort);
    const hash = createHash('sha256');
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      socket.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        received += chunk.length;
        // Every 4 MiB the reader stalls long enough for the kernel buffers to fill, so the
        // gateway's writes to it queue (and reading upstream stops) many times over.
        if (Math.floor(received / STALL_EVERY) !== Math.floor((received - chunk.length) / STALL_EVERY)) {
          socket.pause();
          setTimeout(() => socket.resume(), 60);
        }
      });
      socket.once('end', resolve);
      socket.once('error', reject);
      socket.resume();
    });
    socket.destroy();
    assert.equal(received, SIZE);
    assert.equal(hash.digest('hex'), expected);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(gateway.counters().allowed, 1);
  });
});
