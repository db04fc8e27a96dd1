import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Agent, createServer as createHttpServer, request, type IncomingMessage } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, it } from 'node:test';
import { listen, waitFor } from './helpers.js';
import { openTunnel, readSlowly, writeAll } from './tunnel-client.js';
import { createEgressGateway, type EgressGateway } from '../src/egress/gateway/egress-gateway.js';
import type { EgressEvent } from '../src/egress/log/egress-log.js';
import { KERNEL_RELAY_NAME, PROMOTE_AFTER } from '../src/egress/stream/kernel-relay.js';

/**
 * A checked tunnel that turns out to be bulk, and a forward proxy's long Content-Length
 * body, are handed to the kernel relay (a perl helper splicing the sockets:
 * stream/kernel-relay.ts). What must hold once node no longer sees the bytes: every byte
 * arrives, in order, under backpressure; the log counts every byte and says the kernel
 * moved them; a half-close is passed on; a forward connection stays usable for its next
 * request; a body cut short is not passed off as complete; and nothing outlives the
 * gateway's say-so: a reload that revokes the tunnel, the gateway closing, or the gateway's
 * process dying ends the relay and its connections.
 */

const TOKEN = 'kernel-relay-test-token-0123456789';
const MIB = 1024 * 1024;
const SIZE = 32 * MIB;
const AUTH = `Basic ${Buffer.from(`agentcell:${TOKEN}`).toString('base64')}`;

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Reads to the end, stalling 40 ms every 4 MiB. */
const readAll = (socket: Socket | IncomingMessage): Promise<{ received: number; hash: string }> =>
  readSlowly(socket, 4 * MIB, 40);
const tunnel = (gatewayPort: number, port: number): Promise<Socket> => openTunnel(gatewayPort, port, TOKEN);

/** The perl processes whose parent is `pid` (the kernel relay's helpers). */
function perlChildren(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid …: comm may hold spaces, so split after its closing parenthesis.
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (comm === 'perl' && ppid === pid) found.push(Number(entry));
  }
  return found;
}

/** Whether `pid` is a live process (a zombie waiting for its reaper is not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Settles once `socket` has closed; rejects after `ms`. */
function closedWithin(socket: Socket, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.closed) return resolve();
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on('error', () => undefined);
    socket.resume();
  });
}

/** A source that answers the client's first line with bytes until the client goes (no end). */
function endlessSource(): Server {
  const chunk = randomBytes(MIB);
  chunk[0] = 0x41;
  return createServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () => {
      const pump = (): void => {
        while (!socket.destroyed && socket.write(chunk));
        if (!socket.destroyed) socket.once('drain', pump);
      };
      pump();
    });
  });
}

/** Resolves once `socket` has received `bytes`, reading as fast as it can. */
function received(socket: Socket, bytes: number): Promise<void> {
  let count = 0;
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      count += chunk.length;
      if (count < bytes) return;
      socket.off('data', onData);
      resolve();
    };
    socket.on('data', onData);
    socket.resume();
  });
}

describe('kernel relay: tunnels', { timeout: 120_000 }, () => {
  const data = randomBytes(SIZE);
  // Not a TLS record (the gateway refuses a 0x16 whose ClientHello it can't read).
  data[0] = 0x41;
  const expected = sha(data);
  let download: Server;
  let echo: Server;
  let endless: Server;
  let ports: { download: number; echo: number; endless: number };
  let gateway: EgressGateway;
  let gatewayPort: number;
  let events: EgressEvent[];
  const allow = (): string[] => Object.values(ports).map((port) => `127.0.0.1:${port}`);

  before(async () => {
    // Answers the client's first bytes with SIZE bytes, then ends.
    download = createServer((socket) => socket.once('data', () => writeAll(socket, data)));
    // Sends back what it reads; ends when the client has (a half-close both ways).
    echo = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
    endless = endlessSource();
    ports = { download: await listen(download), echo: await listen(echo), endless: await listen(endless) };
  });
  afterEach(async () => {
    await gateway.close();
  });
  after(() => {
    for (const server of [download, echo, endless]) server.close();
  });

  async function startGateway(): Promise<void> {
    events = [];
    gateway = createEgressGateway({
      rules: { allow: allow() },
      token: TOKEN,
      tcp: { port: 0 },
      onEvent: (event) => events.push(event),
    });
    gatewayPort = (await gateway.listen()).tcp?.port ?? 0;
  }

  it('hands a bulk download to the kernel: every byte in order through a stalling reader, all of them counted', async () => {
    await startGateway();
    const socket = await tunnel(gatewayPort, ports.download);
    socket.write('hello\n');
    const got = await readAll(socket);
    socket.destroy();
    assert.equal(got.received, SIZE);
    assert.equal(got.hash, expected);
    await waitFor('the tunnel logged', () => events.length === 1, 5_000);
    const [event] = events;
    assert.equal(event?.kernelRelay, true, 'the tunnel was handed to the kernel relay');
    assert.equal(event?.bytesDown, SIZE);
    assert.equal(event?.bytesUp, 6);
    assert.deepEqual(perlChildren(process.pid), [], 'the helper exited with its tunnel');
  });

  it('passes each way through the kernel, and the half-close, byte for byte', async () => {
    await startGateway();
    const socket = await tunnel(gatewayPort, ports.echo);
    const back = readAll(socket);
    writeAll(socket, data);
    const got = await back;
    socket.destroy();
    assert.equal(got.received, SIZE);
    assert.equal(got.hash, expected);
    await waitFor('the tunnel logged', () => events.length === 1, 5_000);
    assert.equal(events[0]?.kernelRelay, true);
    assert.equal(events[0]?.bytesUp, SIZE);
    assert.equal(events[0]?.bytesDown, SIZE);
  });

  it('leaves a short tunnel in node (no helper for a few bytes)', async () => {
    await startGateway();
    const socket = await tunnel(gatewayPort, ports.echo);
    const back = readAll(socket);
    socket.end('a few bytes\n');
    assert.equal((await back).received, 12);
    socket.destroy();
    await waitFor('the tunnel logged', () => events.length === 1, 5_000);
    assert.equal(events[0]?.kernelRelay, undefined);
    assert.ok(PROMOTE_AFTER > 12);
  });

  it('runs the helper bare, ends it at once when a reload revokes the tunnel, and logs its bytes', async () => {
    await startGateway();
    const socket = await tunnel(gatewayPort, ports.endless);
    socket.write('go\n');
    await received(socket, 3 * PROMOTE_AFTER);
    await waitFor('the helper', () => perlChildren(process.pid).length === 1, 5_000);
    // It runs as what `ps` shows, with no environment (PERL5OPT would run code in it).
    const [helper] = perlChildren(process.pid);
    assert.equal(readFileSync(`/proc/${helper}/cmdline`, 'utf8').split('\0')[0], KERNEL_RELAY_NAME);
    assert.equal(readFileSync(`/proc/${helper}/environ`, 'utf8'), '');
    let count = 0;
    socket.on('data', (chunk: Buffer) => (count += chunk.length));
    const { revoked } = gateway.reload({ allow: [] });
    assert.equal(revoked, 1);
    await closedWithin(socket, 3_000);
    await waitFor('the helper gone', () => perlChildren(process.pid).length === 0, 3_000);
    await waitFor('the tunnel logged', () => events.length === 1, 3_000);
    const [event] = events;
    assert.equal(event?.revoked, true);
    assert.equal(event?.kernelRelay, true);
    assert.ok((event?.bytesDown ?? 0) >= 3 * PROMOTE_AFTER + count, `bytesDown ${event?.bytesDown}`);
  });

  it('ends kernel-relayed tunnels when the gateway closes', async () => {
    await startGateway();
    const socket = await tunnel(gatewayPort, ports.endless);
    socket.write('go\n');
    await received(socket, 3 * PROMOTE_AFTER);
    await waitFor('the helper', () => perlChildren(process.pid).length === 1, 5_000);
    await gateway.close();
    await closedWithin(socket, 3_000);
    await waitFor('the helper gone', () => perlChildren(process.pid).length === 0, 3_000);
  });
});

describe('kernel relay: the gateway process dies', { timeout: 60_000 }, () => {
  let endless: Server;
  let port: number;
  before(async () => {
    endless = endlessSource();
    port = await listen(endless);
  });
  after(() => endless.close());

  it('takes its helpers and their tunnels with it (SIGKILL: no cleanup code runs)', async () => {
    const gatewayModule = join(dirname(fileURLToPath(import.meta.url)), '..', 'src/egress/gateway/egress-gateway.js');
    const script = [
      `const { createEgressGateway } = await import(${JSON.stringify(gatewayModule)});`,
      `const gateway = createEgressGateway({ rules: { allow: ['127.0.0.1:${port}'] }, token: '${TOKEN}', tcp: { port: 0 } });`,
      'const address = await gateway.listen();',
      'process.stdout.write(`${address.tcp.port}\\n`);',
    ].join('\n');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const gatewayPort = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (line: Buffer) => resolve(Number(line.toString().trim())));
      child.once('exit', (code) => reject(new Error(`gateway exited ${code}`)));
    });
    const socket = await tunnel(gatewayPort, port);
    socket.write('go\n');
    await received(socket, 3 * PROMOTE_AFTER);
    const pid = child.pid ?? 0;
    await waitFor('the helper', () => perlChildren(pid).length === 1, 5_000);
    const [helper] = perlChildren(pid);
    child.kill('SIGKILL');
    await closedWithin(socket, 3_000);
    await waitFor('the helper gone', () => !running(helper ?? 0), 3_000);
  });
});

describe('kernel relay: forward proxy bodies', { timeout: 120_000 }, () => {
  const data = randomBytes(SIZE);
  const expected = sha(data);
  let upstream: Server;
  let port: number;
  let gateway: EgressGateway;
  let gatewayPort: number;
  const events: EgressEvent[] = [];

  before(async () => {
    upstream = createHttpServer((req, res) => {
      req.resume();
      if (req.url === '/small') return void res.end('small body\n');
      res.writeHead(200, { 'content-length': String(SIZE) });
      if (req.url === '/cut') {
        // Promises SIZE, sends a quarter, then drops the connection.
        return void res.write(data.subarray(0, SIZE / 4), () => res.socket?.destroy());
      }
      res.end(data);
    });
    port = await listen(upstream);
    gateway = createEgressGateway({
      rules: { allow: [`127.0.0.1:${port}`] },
      token: TOKEN,
      tcp: { port: 0 },
      onEvent: (event) => events.push(event),
    });
    gatewayPort = (await gateway.listen()).tcp?.port ?? 0;
  });
  after(async () => {
    await gateway.close();
    upstream.close();
  });

  /** GET `path` through the proxy on `agent`'s one connection. */
  function get(agent: Agent, path: string): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port: gatewayPort,
        path: `http://127.0.0.1:${port}${path}`,
        headers: { 'proxy-authorization': AUTH },
        agent,
      });
      req.once('response', resolve);
      req.once('error', reject);
      req.end();
    });
  }

  it('hands a long body to the kernel: byte for byte, counted, and the connection serves the next request', async () => {
    events.length = 0;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<Socket>();
    const first = await get(agent, '/big');
    sockets.add(first.socket);
    assert.equal(first.headers['content-length'], String(SIZE));
    const got = await readAll(first);
    assert.equal(got.received, SIZE);
    assert.equal(got.hash, expected);
    const second = await get(agent, '/small');
    sockets.add(second.socket);
    const chunks: Buffer[] = [];
    for await (const chunk of second) chunks.push(chunk as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'small body\n');
    assert.equal(sockets.size, 1, 'the second request went over the same client connection');
    agent.destroy();
    await waitFor('both logged', () => events.length === 2, 5_000);
    const [big, small] = events;
    assert.equal(big?.kernelRelay, true);
    assert.ok((big?.bytesDown ?? 0) > SIZE && (big?.bytesDown ?? 0) < SIZE + 1_000, `bytesDown ${big?.bytesDown}`);
    assert.equal(small?.kernelRelay, undefined);
    assert.deepEqual(perlChildren(process.pid), []);
  });

  it('does not pass a body cut short off as complete', async () => {
    events.length = 0;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const res = await get(agent, '/cut');
    let count = 0;
    const outcome = await new Promise<string>((resolve) => {
      res.on('data', (chunk: Buffer) => (count += chunk.length));
      res.once('end', () => resolve(res.complete ? 'complete' : 'incomplete'));
      res.once('aborted', () => resolve('aborted'));
      res.once('error', () => resolve('error'));
      res.socket.once('close', () => resolve(res.complete ? 'complete' : 'closed'));
    });
    agent.destroy();
    assert.notEqual(outcome, 'complete');
    assert.ok(count < SIZE, `${count} bytes`);
    await waitFor('logged', () => events.length === 1, 5_000);
    assert.equal(events[0]?.kernelRelay, true);
  });
});
