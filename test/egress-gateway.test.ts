import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listen } from './helpers.js';
import { makeCerts } from './make-certs.js';
import { assertLogReadsBack, startTestGateway, type TestGateway } from './test-gateway.js';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { startCellBridge } from '../src/egress/cell/cell-bridge.js';
import type { EgressGatewayOptions } from '../src/egress/gateway/egress-gateway.js';
import { bindGatewaySocket } from '../src/egress/gateway/gateway-socket.js';
import { newProxyToken } from '../src/egress/gateway/proxy-auth.js';
import type { EgressEvent } from '../src/egress/log/egress-log.js';
import type { HostRules } from '../src/egress/rules/host-rules.js';

/*
 * Real sockets, loopback only: every test server listens on 127.0.0.1, every name is
 * mapped to 127.0.0.1 by `resolve` or by an injected lookup (never real DNS, except
 * `localhost` from /etc/hosts), and clients are curl and raw node sockets.
 */

const BRIDGE_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'agentcell-bridge.cjs');

interface Fixture {
  dir: string;
  caPath: string;
  httpsPort: number;
  httpPort: number;
  echoPort: number;
  /** Proxy-Authorization headers the origin servers saw (must stay empty). */
  leakedAuth: string[];
  servers: Server[];
}

let fx: Fixture;

async function setupFixture(): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-egress-'));
  const {
    key,
    cert,
    ca: caPath,
  } = await makeCerts(dir, 'agentcell', [
    ...['ok.agentcell.test', 'other.agentcell.test', 'evil.agentcell.test', 'rebind.agentcell.test'],
    ...['localhost', '127.0.0.1'],
  ]);
  const leakedAuth: string[] = [];
  const note = (header: string | undefined): void => {
    if (header !== undefined) leakedAuth.push(header);
  };
  const https = createHttpsServer({ key, cert }, (req, res) => {
    note(req.headers['proxy-authorization']);
    res.end(`hello over tls from ${req.headers.host} ${req.url}`);
  });
  const http = createHttpServer((req, res) => {
    note(req.headers['proxy-authorization']);
    res.end(`hello in cleartext from ${req.headers.host} ${req.url}`);
  });
  const echo = createNetServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.write('SSH-2.0-echo\r\n');
    socket.pipe(socket);
  });
  const [httpsPort, httpPort, echoPort] = await Promise.all([listen(https), listen(http), listen(echo)]);
  return { dir, caPath, httpsPort, httpPort, echoPort, leakedAuth, servers: [https, http, echo] };
}

interface UnixGateway extends TestGateway {
  socketPath: string;
  lookups: string[];
}

const RESOLVE = {
  'ok.agentcell.test': '127.0.0.1',
  'other.agentcell.test': '127.0.0.1',
  'evil.agentcell.test': '127.0.0.1',
  'echo.agentcell.test': '127.0.0.1',
};
const gateways: UnixGateway[] = [];

/** A gateway on a unix socket and 127.0.0.1:0, names resolved only by `resolve` or `dns`. */
async function startGateway(
  rules: HostRules,
  options: { dns?: Record<string, string[]>; gateway?: Partial<EgressGatewayOptions> } = {},
): Promise<UnixGateway> {
  const lookups: string[] = [];
  const socketPath = join(fx.dir, `gw-${gateways.length}.sock`);
  const gw = await startTestGateway(fx.dir, {
    rules: { resolve: RESOLVE, ...rules },
    socketPath,
    lookup: (host) => {
      lookups.push(host);
      const found = options.dns?.[host];
      return found
        ? Promise.resolve(found)
        : Promise.reject(Object.assign(new Error('no such name'), { code: 'ENOTFOUND' }));
    },
    ...options.gateway,
  });
  const started: UnixGateway = { ...gw, socketPath, lookups };
  gateways.push(started);
  return started;
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Asynchronous: the gateway runs in this process, so a blocking spawn would deadlock it. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, timeout: 20_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function curl(gw: { port: number; token?: string }, url: string, extra: string[] = []): Promise<Ran> {
  const auth = gw.token === undefined ? [] : ['--proxy-user', `agentcell:${gw.token}`];
  return run('curl', [
    '-sS',
    '--max-time',
    '10',
    '-x',
    `http://127.0.0.1:${gw.port}`,
    ...auth,
    '--cacert',
    fx.caPath,
    ...extra,
    url,
  ]);
}

/** Buffers a socket's bytes so a test can read exact amounts, lines or to the end. */
class Reader {
  private data = Buffer.alloc(0);
  private ended = false;
  private waiters: (() => void)[] = [];
  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.data = Buffer.concat([this.data, chunk]);
      this.wake();
    });
    const end = (): void => {
      this.ended = true;
      this.wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }
  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
  private async until(done: () => boolean): Promise<void> {
    while (!done() && !this.ended) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  async bytes(n: number): Promise<Buffer> {
    await this.until(() => this.data.length >= n);
    const out = this.data.subarray(0, n);
    this.data = this.data.subarray(out.length);
    return out;
  }
  /** What has come so far, left unread. */
  pending(): string {
    return this.data.toString('latin1');
  }
  async upTo(delimiter: string): Promise<string> {
    await this.until(() => this.data.includes(delimiter));
    const at = this.data.indexOf(delimiter);
    const end = at === -1 ? this.data.length : at + delimiter.length;
    const out = this.data.subarray(0, end).toString('latin1');
    this.data = this.data.subarray(end);
    return out;
  }
  async all(): Promise<string> {
    await this.until(() => false);
    const out = this.data.toString('utf8');
    this.data = Buffer.alloc(0);
    return out;
  }
  /** Hands the socket back with any unread bytes pushed back into it. */
  release(): Socket {
    this.socket.removeAllListeners('data');
    this.socket.pause();
    if (this.data.length > 0) this.socket.unshift(this.data);
    return this.socket;
  }
}

function openUnixSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path }, () => resolve(socket));
    socket.once('error', reject);
  });
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

interface ProxyReply {
  status: number;
  headers: Record<string, string>;
  body: string;
  reader: Reader;
}

/** Sends a raw request head to the gateway; on a non-200 reads the whole (closing) reply. */
async function rawRequest(port: number, head: string): Promise<ProxyReply> {
  const reader = new Reader(await openSocket(port));
  reader.socket.write(head);
  const text = await reader.upTo('\r\n\r\n');
  const [statusLine = '', ...lines] = text.trimEnd().split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const status = Number(statusLine.split(' ')[1]);
  const body = status === 200 ? '' : await reader.all();
  return { status, headers, body, reader };
}

function connectHead(authority: string, token: string | undefined): string {
  const auth =
    token === undefined ? '' : `Proxy-Authorization: Basic ${Buffer.from(`agentcell:${token}`).toString('base64')}\r\n`;
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`;
}

/** TLS over an established tunnel; resolves with the response body or rejects with the TLS error. */
function httpsOverTunnel(socket: Socket, servername: string, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({ socket, servername, ca: readFileSync(fx.caPath) }, () => {
      tls.write(`GET ${path} HTTP/1.1\r\nHost: ${servername || 'ok.agentcell.test'}\r\nConnection: close\r\n\r\n`);
    });
    let text = '';
    tls.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    tls.on('end', () => resolve(text.slice(text.indexOf('\r\n\r\n') + 4)));
    tls.on('error', reject);
  });
}

/** A SOCKS5 handshake by hand; returns the reply code and the reader for the tunnel. */
async function socks5(
  port: number,
  target: { host: string; port: number },
  credentials: { user: string; password: string } | undefined,
): Promise<{ stage: 'method' | 'auth' | 'reply'; code: number; reader: Reader }> {
  const reader = new Reader(await openSocket(port));
  reader.socket.write(Buffer.from(credentials ? [5, 1, 2] : [5, 1, 0]));
  const method = await reader.bytes(2);
  if (method[1] !== 2) return { stage: 'method', code: method[1] ?? -1, reader };
  const user = Buffer.from(credentials!.user);
  const password = Buffer.from(credentials!.password);
  reader.socket.write(Buffer.concat([Buffer.from([1, user.length]), user, Buffer.from([password.length]), password]));
  const auth = await reader.bytes(2);
  if (auth[1] !== 0) return { stage: 'auth', code: auth[1] ?? -1, reader };
  const host = Buffer.from(target.host);
  const portBytes = Buffer.alloc(2);
  portBytes.writeUInt16BE(target.port);
  reader.socket.write(Buffer.concat([Buffer.from([5, 1, 0, 3, host.length]), host, portBytes]));
  const reply = await reader.bytes(10);
  return { stage: 'reply', code: reply[1] ?? -1, reader };
}

async function waitFor<T>(find: () => T | undefined, what: string): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const found = find();
    if (found !== undefined) return found;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function eventFor(gw: TestGateway, match: Partial<EgressEvent>): Promise<EgressEvent> {
  return waitFor(
    () => gw.events.find((event) => Object.entries(match).every(([k, v]) => event[k as keyof EgressEvent] === v)),
    `an event like ${JSON.stringify(match)}`,
  );
}

before(async () => {
  fx = await setupFixture();
});

after(async () => {
  await Promise.all(gateways.map((gw) => gw.gateway.close()));
  for (const gw of gateways) assertLogReadsBack(gw);
  for (const server of fx.servers) server.close();
  rmSync(fx.dir, { recursive: true, force: true });
});

describe('egress gateway: HTTPS through CONNECT', () => {
  it('reaches an allowed name (curl, test CA, body verified) and logs the tunnel with its bytes', async () => {
    const gw = await startGateway({ allow: ['ok.agentcell.test'] });
    const result = await curl(gw, `https://ok.agentcell.test:${fx.httpsPort}/hello`);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `hello over tls from ok.agentcell.test:${fx.httpsPort} /hello`);
    const event = await eventFor(gw, { host: 'ok.agentcell.test', decision: 'allow' });
    assert.equal(event.kind, 'connect');
    assert.equal(event.port, fx.httpsPort);
    assert.equal(event.address, '127.0.0.1');
    assert.equal(event.rule, 'ok.agentcell.test');
    assert.equal(event.reason, 'allow-rule');
    assert.ok(event.bytesUp > 100 && event.bytesDown > 100, JSON.stringify(event));
    assert.deepEqual(gw.lookups, [], 'a resolve override is used, not DNS');
  });

  it('denies a name on the deny list (deny wins over *.) and an unlisted one: 403, header, one-line reason', async () => {
    const gw = await startGateway({ allow: ['*.agentcell.test'], deny: ['evil.agentcell.test'] });
    const denied = await rawRequest(gw.port, connectHead(`evil.agentcell.test:${fx.httpsPort}`, gw.token));
    assert.equal(denied.status, 403);
    assert.equal(denied.headers['x-agentcell-denied'], 'deny-rule');
    assert.equal(denied.headers['x-agentcell-rule'], 'evil.agentcell.test');
    assert.match(
      denied.body,
      new RegExp(`^agentcell: denied evil\\.agentcell\\.test:${fx.httpsPort}: deny-rule \\(.*\\)\\n$`),
    );

    const unlisted = await rawRequest(gw.port, connectHead('unlisted.example:443', gw.token));
    assert.equal(unlisted.status, 403);
    assert.equal(unlisted.headers['x-agentcell-denied'], 'not-allowed');
    assert.equal(unlisted.headers['x-agentcell-rule'], undefined);
    assert.match(unlisted.body, /^agentcell: denied unlisted\.example:443: not-allowed /);
    assert.deepEqual(gw.lookups, [], 'no DNS query is made for a denied name');

    const viaCurl = await curl(gw, `https://evil.agentcell.test:${fx.httpsPort}/`);
    assert.notEqual(viaCurl.code, 0);
    assert.match(viaCurl.stderr, /403/);
    const events = gw.events.filter((event) => event.decision === 'deny');
    assert.deepEqual(
      events.map((event) => [event.host, event.reason, event.rule]),
      [
        ['evil.agentcell.test', 'deny-rule', 'evil.agentcell.test'],
        ['unlisted.example', 'not-allowed', null],
        ['evil.agentcell.test', 'deny-rule', 'evil.agentcell.test'],
      ],
    );
  });

  it('denies TLS whose SNI differs from the CONNECT host, or has none, with a TLS access_denied alert', async () => {
    const gw = await startGateway({ allow: ['ok.agentcell.test', 'other.agentcell.test'] });
    const authority = `ok.agentcell.test:${fx.httpsPort}`;

    const good = await rawRequest(gw.port, connectHead(authority, gw.token));
    assert.equal(good.status, 200);
    assert.match(await httpsOverTunnel(good.reader.release(), 'ok.agentcell.test', '/x'), /hello over tls/);

    const mismatch = await rawRequest(gw.port, connectHead(authority, gw.token));
    assert.equal(mismatch.status, 200);
    await assert.rejects(httpsOverTunnel(mismatch.reader.release(), 'other.agentcell.test'), /access denied/i);
    const event = await eventFor(gw, { reason: 'sni-mismatch' });
    assert.equal(event.decision, 'deny');
    assert.equal(event.host, 'ok.agentcell.test');

    const missing = await rawRequest(gw.port, connectHead(authority, gw.token));
    await assert.rejects(httpsOverTunnel(missing.reader.release(), ''), /access denied/i);
    await eventFor(gw, { reason: 'sni-missing', decision: 'deny' });

    // A ClientHello whose lengths don't add up is refused, not waved through as "not TLS".
    const garbled = await rawRequest(gw.port, connectHead(authority, gw.token));
    garbled.reader.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03]));
    const alert = await garbled.reader.all();
    assert.deepEqual([...Buffer.from(alert, 'latin1')], [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31]);
    await eventFor(gw, { reason: 'tls-unreadable', decision: 'deny' });
  });

  it('lets non-TLS traffic (an SSH-like server-first protocol) through on the host rules alone', async () => {
    const gw = await startGateway({ allow: ['echo.agentcell.test'] });
    const tunnel = await rawRequest(gw.port, connectHead(`echo.agentcell.test:${fx.echoPort}`, gw.token));
    assert.equal(tunnel.status, 200);
    assert.equal(await tunnel.reader.upTo('\r\n'), 'SSH-2.0-echo\r\n', 'the server speaks first, unprompted');
    tunnel.reader.socket.write('SSH-2.0-client\r\n');
    assert.equal(await tunnel.reader.upTo('\r\n'), 'SSH-2.0-client\r\n');
    tunnel.reader.socket.end();
    const event = await eventFor(gw, { host: 'echo.agentcell.test' });
    assert.equal(event.decision, 'allow');
    assert.equal(event.bytesUp, 16);
    assert.equal(event.bytesDown, 30);
  });

  it('answers 502 connect-failed when the allowed destination does not answer', async () => {
    const closed = createNetServer();
    const port = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    const gw = await startGateway({ allow: ['ok.agentcell.test'] });
    const reply = await rawRequest(gw.port, connectHead(`ok.agentcell.test:${port}`, gw.token));
    assert.equal(reply.status, 502);
    assert.equal(reply.headers['x-agentcell-denied'], 'connect-failed');
    assert.match(reply.body, /ECONNREFUSED/);
  });
});

describe('egress gateway: addresses (DNS rebinding guard)', () => {
  const dns = { 'rebind.agentcell.test': ['127.0.0.1'], 'mapped.agentcell.test': ['::ffff:127.0.0.1'] };

  it('denies a name that resolves to 127.0.0.1 unless the policy lists the address', async () => {
    const closedGw = await startGateway({ allow: ['*.agentcell.test'] }, { dns });
    for (const name of ['rebind.agentcell.test', 'mapped.agentcell.test']) {
      const reply = await rawRequest(closedGw.port, connectHead(`${name}:${fx.httpsPort}`, closedGw.token));
      assert.equal(reply.status, 403, name);
      assert.equal(reply.headers['x-agentcell-denied'], 'blocked-address');
      assert.match(reply.body, /127\.0\.0\.1 is a loopback address the policy does not list/);
    }
    assert.deepEqual(closedGw.lookups, ['rebind.agentcell.test', 'mapped.agentcell.test']);
    const event = await eventFor(closedGw, { host: 'mapped.agentcell.test' });
    assert.equal(event.address, '127.0.0.1', 'the IPv4-mapped address is checked as IPv4');

    const listedGw = await startGateway({ allow: ['*.agentcell.test', '127.0.0.1'] }, { dns });
    const ok = await curl(listedGw, `https://rebind.agentcell.test:${fx.httpsPort}/r`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /hello over tls from rebind\.agentcell\.test/);
  });

  it('denies a name resolving to any non-public class, in any spelling, over CONNECT, SOCKS5 and http://', async () => {
    // [address the name resolves to, its class]: every class, and IPv4 classes through
    // every IPv6 spelling that reaches them (mapped, NAT64, 6to4).
    const classes: [string, string][] = [
      ['127.0.0.1', 'loopback'],
      ['127.8.9.10', 'loopback'],
      ['::1', 'loopback'],
      ['::ffff:7f00:1', 'loopback'],
      ['64:ff9b::7f00:1', 'loopback'],
      ['2002:7f00:1::1', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.16.5.4', 'private'],
      ['192.168.0.10', 'private'],
      ['fd12:3456::1', 'private'],
      ['64:ff9b::10.0.0.1', 'private'],
      ['169.254.169.254', 'metadata'],
      ['::ffff:169.254.169.254', 'metadata'],
      ['64:ff9b::a9fe:a9fe', 'metadata'],
      ['2002:a9fe:a9fe::1', 'metadata'],
      ['fd00:ec2::254', 'metadata'],
      ['100.100.100.200', 'metadata'],
      ['169.254.10.1', 'link-local'],
      ['fe80::1', 'link-local'],
      ['100.64.0.1', 'cgnat'],
      ['100.127.255.254', 'cgnat'],
      ['::ffff:100.64.0.1', 'cgnat'],
      ['0.0.0.0', 'unspecified'],
      ['0.1.2.3', 'unspecified'],
      ['::', 'unspecified'],
      ['::ffff:0.0.0.0', 'unspecified'],
      ['224.0.0.251', 'multicast'],
      ['239.255.255.250', 'multicast'],
      ['ff02::fb', 'multicast'],
      ['64:ff9b::e000:fb', 'multicast'],
      ['255.255.255.255', 'reserved'],
      ['240.0.0.1', 'reserved'],
      ['::127.0.0.1', 'reserved'],
      ['2001:db8::1', 'reserved'],
    ];
    const names = classes.map((_, i) => `class-${i}.agentcell.test`);
    const classDns = Object.fromEntries(classes.map(([ip], i) => [names[i] ?? '', [ip]]));
    const gw = await startGateway({ allow: ['*.agentcell.test'] }, { dns: classDns });
    for (const [i, [ip, cls]] of classes.entries()) {
      const name = names[i] ?? '';
      const reply = await rawRequest(gw.port, connectHead(`${name}:${fx.httpsPort}`, gw.token));
      assert.equal(reply.status, 403, `${name} → ${ip}`);
      assert.equal(reply.headers['x-agentcell-denied'], 'blocked-address', `${name} → ${ip}`);
      assert.match(reply.body, new RegExp(` is a ${cls} address the policy does not list`), `${ip}`);
      const socks = await socks5(
        gw.port,
        { host: name, port: fx.httpsPort },
        { user: 'agentcell', password: gw.token },
      );
      assert.deepEqual([socks.stage, socks.code], ['reply', 2], `SOCKS5 ${name} → ${ip}`);
      socks.reader.socket.destroy();
    }
    const denials = gw.events.filter((e) => e.reason === 'blocked-address');
    assert.equal(denials.length, classes.length * 2);
    assert.ok(
      gw.events.every((e) => e.decision === 'deny'),
      'nothing was let through',
    );

    // Cleartext forwarding takes the same path (an allow entry naming the port).
    const cleartext = await startGateway({ allow: [`*.agentcell.test:${fx.httpPort}`] }, { dns: classDns });
    const forwarded = await curl(cleartext, `http://${names[0] ?? ''}:${fx.httpPort}/plain`, ['-i']);
    assert.match(forwarded.stdout, /^HTTP\/1\.1 403 [\s\S]*X-Agentcell-Denied: blocked-address/i);

    // Control: the same names with each address listed are no longer refused for their class
    // (they connect, or fail to connect: the guard let them through).
    const listed = classes.map(([ip]) => (ip.includes(':') ? `[${ip}]` : ip));
    const open = await startGateway(
      { allow: ['*.agentcell.test', ...listed] },
      { dns: classDns, gateway: { connectTimeoutMs: 200 } },
    );
    for (const [i, [ip]] of classes.entries()) {
      const reply = await rawRequest(open.port, connectHead(`${names[i] ?? ''}:${fx.httpsPort}`, open.token));
      assert.notEqual(reply.headers['x-agentcell-denied'], 'blocked-address', `listed ${ip}`);
      reply.reader.socket.destroy();
    }
  });

  it('an address listed for another port does not open this one', async () => {
    const gw = await startGateway({ allow: ['*.agentcell.test', `127.0.0.1:${fx.echoPort}`] }, { dns });
    const reply = await rawRequest(gw.port, connectHead(`rebind.agentcell.test:${fx.httpsPort}`, gw.token));
    assert.equal(reply.status, 403);
    assert.equal(reply.headers['x-agentcell-denied'], 'blocked-address');
  });

  it('denies localhost from the system resolver, allows the listed address by IP', async () => {
    const gw = await startGateway(
      { allow: ['localhost', `127.0.0.1:${fx.httpsPort}`] },
      { gateway: { lookup: undefined } },
    );
    const byName = await rawRequest(gw.port, connectHead(`localhost:${fx.echoPort}`, gw.token));
    assert.equal(byName.status, 403);
    assert.equal(byName.headers['x-agentcell-denied'], 'blocked-address');
    const byAddress = await curl(gw, `https://127.0.0.1:${fx.httpsPort}/ip`);
    assert.equal(byAddress.code, 0, byAddress.stderr);
    assert.match(byAddress.stdout, /hello over tls from 127\.0\.0\.1/);
  });
});

describe('egress gateway: cleartext HTTP', () => {
  it('is denied by default, even for a name allowed for TLS', async () => {
    const gw = await startGateway({ allow: ['ok.agentcell.test'] });
    const result = await curl(gw, `http://ok.agentcell.test:${fx.httpPort}/plain`, ['-i']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^HTTP\/1\.1 403 /);
    assert.match(result.stdout, /X-Agentcell-Denied: cleartext-not-allowed/i);
    assert.match(result.stdout, /X-Agentcell-Rule: ok\.agentcell\.test/i);
    assert.match(result.stdout, /agentcell: denied ok\.agentcell\.test:\d+: cleartext-not-allowed \(/);

    // The same cleartext inside a CONNECT tunnel gets the 403 in-band.
    const tunneled = await curl(gw, `http://ok.agentcell.test:${fx.httpPort}/plain`, ['-i', '-p']);
    assert.match(tunneled.stdout, /403 Forbidden[\s\S]*cleartext-not-allowed/);
  });

  it('is forwarded when an allow entry names the port; the proxy token never reaches the server', async () => {
    const gw = await startGateway({ allow: [`ok.agentcell.test:${fx.httpPort}`] });
    const result = await curl(gw, `http://ok.agentcell.test:${fx.httpPort}/plain?q=1`);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `hello in cleartext from ok.agentcell.test:${fx.httpPort} /plain?q=1`);
    const event = await eventFor(gw, { kind: 'http', decision: 'allow' });
    assert.equal(event.rule, `ok.agentcell.test:${fx.httpPort}`);
    assert.ok(event.bytesDown > 0);
    const tunneled = await curl(gw, `http://ok.agentcell.test:${fx.httpPort}/t`, ['-p']);
    assert.equal(tunneled.stdout, `hello in cleartext from ok.agentcell.test:${fx.httpPort} /t`);
    assert.deepEqual(fx.leakedAuth, []);
  });
});

describe('egress gateway: the per-run token', () => {
  it('answers 407 to a missing or wrong token, and logs both', async () => {
    const gw = await startGateway({ allow: ['ok.agentcell.test'] });
    const url = `https://ok.agentcell.test:${fx.httpsPort}/`;
    const missing = await curl({ port: gw.port }, url);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /407/);
    const wrong = await curl({ port: gw.port, token: 'not-the-token' }, url);
    assert.match(wrong.stderr, /407/);

    const raw = await rawRequest(gw.port, connectHead(`ok.agentcell.test:${fx.httpsPort}`, undefined));
    assert.equal(raw.status, 407);
    assert.equal(raw.headers['proxy-authenticate'], 'Basic realm="agentcell"');
    assert.equal(raw.headers['x-agentcell-denied'], 'proxy-auth-required');

    const forward = await curl({ port: gw.port }, `http://ok.agentcell.test:${fx.httpPort}/`, ['-i']);
    assert.match(forward.stdout, /^HTTP\/1\.1 407 /);

    const reasons = gw.events.map((event) => event.reason);
    assert.deepEqual(reasons, [
      'proxy-auth-required',
      'proxy-auth-invalid',
      'proxy-auth-required',
      'proxy-auth-required',
    ]);
    assert.ok(gw.events.every((event) => event.decision === 'deny'));
  });
});

describe('egress gateway: reload', () => {
  it('widens then narrows for new connections, and closes a tunnel the new rules no longer allow', async () => {
    const gw = await startGateway({ allow: [] });
    const url = `https://ok.agentcell.test:${fx.httpsPort}/`;
    assert.match((await curl(gw, url)).stderr, /403/);

    gw.gateway.reload({ allow: ['ok.agentcell.test', 'echo.agentcell.test'], resolve: RESOLVE });
    const widened = await curl(gw, url);
    assert.equal(widened.code, 0, widened.stderr);

    const tunnel = await rawRequest(gw.port, connectHead(`echo.agentcell.test:${fx.echoPort}`, gw.token));
    assert.equal(tunnel.status, 200);
    await tunnel.reader.upTo('\r\n');
    const narrowed = gw.gateway.reload({ allow: [], resolve: RESOLVE });
    assert.equal(narrowed.revoked, 1);
    await tunnel.reader.all(); // the open tunnel is closed
    const revoked = await eventFor(gw, { host: 'echo.agentcell.test' });
    assert.equal(revoked.revoked, true);
    assert.equal(revoked.decision, 'allow', 'it was allowed while it ran');

    assert.match((await curl(gw, url)).stderr, /403/);
    assert.throws(() => gw.gateway.reload({ allow: ['*'] }), { code: 'POLICY_INVALID' });
    assert.match((await curl(gw, url)).stderr, /403/, 'a bad reload keeps the rules in force');
  });
});

describe('egress gateway: SOCKS5', () => {
  it('connects an allowed name, refuses a denied one, and requires the token', async () => {
    const gw = await startGateway({ allow: ['echo.agentcell.test'] });
    const credentials = { user: 'agentcell', password: gw.token };

    const allowed = await socks5(gw.port, { host: 'echo.agentcell.test', port: fx.echoPort }, credentials);
    assert.deepEqual([allowed.stage, allowed.code], ['reply', 0]);
    assert.equal(await allowed.reader.upTo('\r\n'), 'SSH-2.0-echo\r\n');
    allowed.reader.socket.write('ping\n');
    assert.equal(await allowed.reader.upTo('\n'), 'ping\n');
    allowed.reader.socket.end();

    const denied = await socks5(gw.port, { host: 'ok.agentcell.test', port: fx.httpsPort }, credentials);
    assert.deepEqual([denied.stage, denied.code], ['reply', 0x02]);
    const wrong = await socks5(
      gw.port,
      { host: 'echo.agentcell.test', port: fx.echoPort },
      { ...credentials, password: 'x' },
    );
    assert.deepEqual([wrong.stage, wrong.code], ['auth', 0x01]);
    const anonymous = await socks5(gw.port, { host: 'echo.agentcell.test', port: fx.echoPort }, undefined);
    assert.deepEqual([anonymous.stage, anonymous.code], ['method', 0xff]);

    const echo = await eventFor(gw, { kind: 'socks', decision: 'allow' });
    assert.equal(echo.host, 'echo.agentcell.test');
    const reasons = gw.events.filter((event) => event.decision === 'deny').map((event) => event.reason);
    assert.deepEqual(reasons, ['not-allowed', 'proxy-auth-invalid', 'proxy-auth-required']);
  });

  it('carries HTTPS for curl (socks5h, user and token in the URL)', async () => {
    const gw = await startGateway({ allow: ['ok.agentcell.test'] });
    const result = await run('curl', [
      '-sS',
      '--max-time',
      '10',
      '-x',
      `socks5h://agentcell:${gw.token}@127.0.0.1:${gw.port}`,
      '--cacert',
      fx.caPath,
      `https://ok.agentcell.test:${fx.httpsPort}/socks`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /hello over tls from ok\.agentcell\.test:\d+ \/socks/);
  });
});

describe('egress gateway: the events log', () => {
  it('has one JSONL line per decision with every field, and counters to match', async () => {
    const gw = await startGateway({ allow: ['ok.agentcell.test'], deny: ['evil.agentcell.test'] });
    await curl(gw, `https://ok.agentcell.test:${fx.httpsPort}/1`);
    await curl(gw, `https://evil.agentcell.test:${fx.httpsPort}/2`);
    await curl(gw, `https://unlisted.example/3`);
    await curl({ port: gw.port }, `https://ok.agentcell.test:${fx.httpsPort}/4`);
    await curl(gw, `http://ok.agentcell.test:${fx.httpPort}/5`);
    await waitFor(() => (gw.events.length === 5 ? true : undefined), 'five events');
    await gw.gateway.close();

    const lines = readFileSync(gw.logPath, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 5);
    const events = lines.map((line) => JSON.parse(line) as EgressEvent);
    for (const event of events) {
      assert.deepEqual(Object.keys(event).sort(), [
        'address',
        'bytesDown',
        'bytesUp',
        'cell',
        'decision',
        'durationMs',
        'host',
        'kind',
        'port',
        'reason',
        'rule',
        'run',
        'time',
      ]);
      assert.equal(event.cell, 'test-cell');
      assert.equal(event.run, 'run-1');
      assert.ok(!Number.isNaN(Date.parse(event.time)));
    }
    const summary = events.map(
      (event) => `${event.kind} ${event.host}:${event.port} ${event.decision} ${event.reason}`,
    );
    assert.deepEqual(summary.sort(), [
      `connect evil.agentcell.test:${fx.httpsPort} deny deny-rule`,
      `connect ok.agentcell.test:${fx.httpsPort} allow allow-rule`,
      `connect ok.agentcell.test:${fx.httpsPort} deny proxy-auth-required`,
      `connect unlisted.example:443 deny not-allowed`,
      `http ok.agentcell.test:${fx.httpPort} deny cleartext-not-allowed`,
    ]);
    assert.deepEqual(gw.gateway.counters(), { allowed: 1, denied: 4 });
    assert.ok(!JSON.stringify(events).includes(gw.token), 'the token is never logged');
  });
});

describe('egress gateway: the cell bridge and failing closed', () => {
  it('the bridge carries curl to the unix socket; once the gateway is gone nothing gets through', async () => {
    const gw = await startGateway({ allow: ['ok.agentcell.test'] });
    const bridge = await startCellBridge({ socketPath: gw.socketPath });
    try {
      const url = `https://ok.agentcell.test:${fx.httpsPort}/bridged`;
      const through = await curl({ port: bridge.port, token: gw.token }, url);
      assert.equal(through.code, 0, through.stderr);
      assert.match(through.stdout, /\/bridged$/);

      await gw.gateway.close();
      assert.equal(existsSync(gw.socketPath), false, 'the socket is removed');
      await assert.rejects(openSocket(gw.port), { code: 'ECONNREFUSED' });
      const after = await curl({ port: bridge.port, token: gw.token }, url);
      assert.notEqual(after.code, 0, 'no network once the gateway is down');
      assert.equal(after.stdout, '');
    } finally {
      await bridge.close();
    }
  });

  it('a connection made before the gateway serves its socket waits, unanswered, then gets the gateway’s rules', async () => {
    // A run binds the socket first (the cell binds its path at start) and starts the gateway beside the cell.
    const socketPath = join(fx.dir, 'early.sock');
    const bound = await bindGatewaySocket(socketPath);
    const token = newProxyToken();
    const early = new Reader(await openUnixSocket(socketPath));
    early.socket.write(connectHead(`echo.agentcell.test:${fx.echoPort}`, token));
    const denied = new Reader(await openUnixSocket(socketPath));
    denied.socket.write(connectHead(`other.agentcell.test:${fx.echoPort}`, token));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(early.pending(), '', 'nothing answers before the gateway serves');
    const gw = await startTestGateway(fx.dir, {
      rules: { resolve: RESOLVE, allow: ['echo.agentcell.test'] },
      token,
      socketPath,
      socket: bound,
    });
    try {
      assert.match(await early.upTo('\r\n\r\n'), /^HTTP\/1\.1 200 /);
      assert.equal(await early.upTo('\r\n'), 'SSH-2.0-echo\r\n');
      assert.match(await denied.all(), /^HTTP\/1\.1 403 /, 'a name the rules leave out is refused, as ever');
      early.socket.destroy();
      await eventFor(gw, { host: 'echo.agentcell.test', decision: 'allow' });
      assert.deepEqual(gw.events.map((e) => `${e.host} ${e.decision}`).sort(), [
        'echo.agentcell.test allow',
        'other.agentcell.test deny',
      ]);
    } finally {
      await gw.gateway.close();
    }
    assert.equal(existsSync(socketPath), false, 'the socket goes with the gateway');
  });

  it('a socket whose gateway never came up holds nothing open when closed', async () => {
    const socketPath = join(fx.dir, 'never.sock');
    const bound = await bindGatewaySocket(socketPath);
    const waiting = new Reader(await openUnixSocket(socketPath));
    waiting.socket.write(connectHead(`echo.agentcell.test:${fx.echoPort}`, 'any'));
    bound.close();
    assert.equal(await waiting.all(), '', 'closed unanswered');
    await assert.rejects(openUnixSocket(socketPath), /ENOENT|ECONNREFUSED/, 'nothing listens there any more');
  });

  it('runs as a standalone script: `listen` prints its port, `connect` is an ssh ProxyCommand', async () => {
    const gw = await startGateway({ allow: ['echo.agentcell.test'] });
    const proxyCommand = await new Promise<string>((resolve, reject) => {
      const child = execFile(
        process.execPath,
        [BRIDGE_SCRIPT, 'connect', gw.socketPath, 'echo.agentcell.test', String(fx.echoPort)],
        { env: { AGENTCELL_PROXY_TOKEN: gw.token }, timeout: 10_000 },
        (error, stdout) => (error ? reject(new Error(error.message)) : resolve(stdout)),
      );
      child.stdin!.end('SSH-2.0-from-stdin\r\n');
    });
    assert.equal(proxyCommand, 'SSH-2.0-echo\r\nSSH-2.0-from-stdin\r\n');

    const refused = await run(process.execPath, [BRIDGE_SCRIPT, 'connect', gw.socketPath, 'ok.agentcell.test', '443'], {
      AGENTCELL_PROXY_TOKEN: gw.token,
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /agentcell: denied ok\.agentcell\.test:443: not-allowed/);

    const listener = execFile(process.execPath, [BRIDGE_SCRIPT, 'listen', gw.socketPath, '0']);
    try {
      const ready = await new Promise<string>((resolve) =>
        listener.stdout!.once('data', (d: Buffer) => resolve(String(d))),
      );
      const port = Number(/^ready (\d+)\n$/.exec(ready)?.[1]);
      const tunnel = await rawRequest(port, connectHead(`echo.agentcell.test:${fx.echoPort}`, gw.token));
      assert.equal(tunnel.status, 200);
      assert.equal(await tunnel.reader.upTo('\r\n'), 'SSH-2.0-echo\r\n');
      tunnel.reader.socket.destroy();
    } finally {
      listener.kill();
    }
  });
});
