import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { listen } from './helpers.js';
import { openTunnel, readSlowly, writeAll } from './tunnel-client.js';
import { createEgressGateway, type EgressGateway } from '../src/egress/gateway/egress-gateway.js';
import { withPooledReads } from '../src/egress/stream/pooled-accept.js';
import { createPooledReads } from '../src/egress/stream/pooled-reads.js';

/**
 * Both directions of a tunnel reuse a few read buffers (pooled-reads.ts): a buffer reused
 * before its write left would corrupt the stream. 48 MiB of random bytes go through the
 * gateway each way, to a reader that stalls every few MiB (so writes back up and reading
 * stops and starts many times); the reader's hash must equal the writer's.
 */

const TOKEN = 'relay-test-token-0123456789';
const SIZE = 48 * 1024 * 1024;
const STALL_EVERY = 4 * 1024 * 1024;

const tunnel = (gatewayPort: number, port: number): Promise<Socket> => openTunnel(gatewayPort, port, TOKEN);

describe('tunnel relay: bytes arrive intact under backpressure', () => {
  let source: Server;
  let sink: Server;
  let sourcePort: number;
  let sinkPort: number;
  let gateway: EgressGateway;
  let gatewayPort: number;
  const data = randomBytes(SIZE);
  // Not a TLS handshake record: the gateway refuses a tunnel whose first byte is 0x16 and whose
  // ClientHello it can't read (1 upload in 256 of random bytes did, with a TLS alert).
  data[0] = 0x41;
  const expected = createHash('sha256').update(data).digest('hex');

  before(async () => {
    source = createServer((socket) => writeAll(socket, data));
    // Reads slowly to the end, then answers with what it got (the tunnel is half-closed by then).
    sink = createServer({ allowHalfOpen: true }, (socket) => {
      void readSlowly(socket, STALL_EVERY, 60).then(({ received, hash }) => socket.end(`${received} ${hash}`));
    });
    sourcePort = await listen(source);
    sinkPort = await listen(sink);
    gateway = createEgressGateway({
      rules: { allow: [`127.0.0.1:${sourcePort}`, `127.0.0.1:${sinkPort}`] },
      token: TOKEN,
      tcp: { port: 0 },
    });
    gatewayPort = (await gateway.listen()).tcp?.port ?? 0;
  });
  after(async () => {
    await gateway.close();
    source.close();
    sink.close();
  });

  it('delivers 48 MiB downloaded through a slow reader byte for byte, then the end', async () => {
    const socket = await tunnel(gatewayPort, sourcePort);
    const { received, hash } = await readSlowly(socket, STALL_EVERY, 60);
    socket.destroy();
    assert.equal(received, SIZE);
    assert.equal(hash, expected);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(gateway.counters().allowed, 1);
  });

  it('delivers 48 MiB uploaded to a slow reader byte for byte, then the half-close, and carries the answer back', async () => {
    const socket = await tunnel(gatewayPort, sinkPort);
    const answer = new Promise<string>((resolve, reject) => {
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => (text += chunk));
      socket.once('end', () => resolve(text));
      socket.once('error', reject);
      socket.resume();
    });
    writeAll(socket, data);
    assert.equal(await answer, `${SIZE} ${expected}`);
    socket.destroy();
  });
});

describe('pooled reads on accepted sockets', () => {
  it('re-wraps a paused accepted socket on this node, reading through the pool, byte for byte', async () => {
    const reads = createPooledReads();
    let pooled = 0;
    const counted = {
      ...reads,
      onread: {
        buffer: reads.onread.buffer,
        callback: (bytes: number, buffer: Buffer) => {
          pooled += bytes;
          return reads.onread.callback(bytes, buffer);
        },
      },
    };
    const payload = randomBytes(1024 * 1024);
    const received = new Promise<{ rewrapped: boolean; got: Buffer }>((resolve, reject) => {
      const server = createServer({ pauseOnConnect: true }, (accepted) => {
        server.close();
        const socket = withPooledReads(accepted, counted);
        if (!socket) return resolve({ rewrapped: false, got: Buffer.alloc(0) });
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => chunks.push(chunk));
        socket.once('end', () => {
          socket.end();
          resolve({ rewrapped: true, got: Buffer.concat(chunks) });
        });
        socket.once('error', reject);
      });
      void listen(server).then((port) => {
        const client = connect(port, '127.0.0.1', () => client.end(payload));
        client.resume();
      });
    });
    const { rewrapped, got } = await received;
    // If this fails after a node update, see pooled-accept.ts: uploads still work, on node's buffers.
    assert.equal(rewrapped, true, 'node no longer lets an accepted socket read into pooled buffers');
    assert.equal(pooled, payload.length);
    assert.ok(got.equals(payload));
  });
});

describe('pooled reads: large buffers', () => {
  it('hands a reader whose last read filled its buffer a large one, at most four in the process, never one twice', () => {
    const readers = Array.from({ length: 10 }, () => createPooledReads());
    const handed = readers.map((reads) => {
      const first = reads.onread.buffer();
      reads.onread.callback(first.length, first); // a full read: more is waiting
      return reads.onread.buffer();
    });
    const large = handed.filter((buffer) => buffer.length > 64 * 1024);
    assert.ok(large.length >= 1 && large.length <= 4, `${large.length} large buffers`);
    assert.equal(new Set(handed).size, handed.length);
  });
});
