import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestGateway } from './test-gateway.js';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { createLeafMinter, loadOrCreateCellCa } from '../src/egress/cell/cell-ca.js';
import { cellCaFiles } from '../src/egress/cell/cell-trust.js';
import type { EgressGateway, GatewayRules } from '../src/egress/gateway/egress-gateway.js';
import type { EgressEvent } from '../src/egress/log/egress-log.js';
import type { ProxySecret } from '../src/egress/rules/inspect-rules.js';
import { proxyAuthorization } from '../src/egress/gateway/proxy-auth.js';
import { agentcellAsync, makeSandbox } from './helpers.js';

/*
 * WebSocket upgrades and ALPN through an inspected tunnel, on loopback: a `ws` server
 * behind TLS from a test CA (trusted by the gateway through `upstreamCa`), a `ws`
 * client that reaches it through the gateway's CONNECT and trusts the cell CA.
 */

const SECRET = 'sk-ws-secret-value-0123456789abcdef';
const SECRET_ENV: ProxySecret = {
  name: 'WS_KEY',
  host: 'api.test',
  header: 'Authorization',
  headerValue: `Bearer ${SECRET}`,
  value: SECRET,
};
const RESOLVE = { 'api.test': '127.0.0.1' };

let dir: string;
let upstreamCa: string;
let cellCa: string;
let server: Server;
let port: number;
/** The upgrade requests the server saw. */
const upgrades: { url: string; headers: IncomingHttpHeaders }[] = [];
const gateways: EgressGateway[] = [];

interface Gw {
  port: number;
  token: string;
  events: EgressEvent[];
  gateway: EgressGateway;
}

async function startGateway(rules: GatewayRules, secrets: ProxySecret[] = [], trustUpstream = true): Promise<Gw> {
  const ca = await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell-ca')), 'test');
  const gw = await startTestGateway(dir, {
    rules: { resolve: RESOLVE, inspect: ['api.test'], ...rules },
    inspect: {
      leaves: createLeafMinter(ca),
      upstreamCa: trustUpstream ? [readFileSync(upstreamCa, 'utf8')] : [],
      secrets,
    },
  });
  gateways.push(gw.gateway);
  return gw;
}

/** CONNECT through the gateway, then TLS to `api.test` trusting the cell CA, offering `alpn`. */
function tunnel(gw: Gw, alpn: string[] = ['http/1.1']): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const connect = httpRequest({
      host: '127.0.0.1',
      port: gw.port,
      method: 'CONNECT',
      path: `api.test:${port}`,
      headers: { 'proxy-authorization': proxyAuthorization(gw.token) },
    });
    connect.once('error', reject);
    connect.once('connect', (response: IncomingMessage, socket) => {
      if (response.statusCode !== 200) return reject(new Error(`CONNECT ${String(response.statusCode)}`));
      const tls = tlsConnect({ socket, servername: 'api.test', ca: readFileSync(cellCa, 'utf8'), ALPNProtocols: alpn });
      tls.once('secureConnect', () => resolve(tls));
      tls.once('error', reject);
    });
    connect.end();
  });
}

/** A `ws` client through the gateway; with `headers` as the cell would send them. */
async function openSocket(gw: Gw, path: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const tls = await tunnel(gw);
  return new WebSocket(`wss://api.test:${port}${path}`, { createConnection: () => tls, headers });
}

function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once('message', (data: Buffer) => resolve(data.toString('utf8'))));
}

function closedSocket(ws: WebSocket): Promise<number> {
  return new Promise((resolve) => ws.once('close', (code: number) => resolve(code)));
}

/** The refusal (or other non-101 answer) a `ws` client got instead of an upgrade. */
function refusal(ws: WebSocket): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('the upgrade went through')));
    ws.once('error', () => undefined); // ws reports the aborted handshake after unexpected-response
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
  });
}

async function settle(events: EgressEvent[], done: (events: EgressEvent[]) => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(events); i++) await new Promise((r) => setTimeout(r, 20));
}

const requests = (events: EgressEvent[]): EgressEvent[] => events.filter((e) => e.kind === 'request');

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentcell-ws-'));
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'up-ca.key', '-out', 'up-ca.pem', '-days', '2', '-subj', '/CN=ws test CA');
  openssl('req', ...ec, '-keyout', 'up.key', '-out', 'up.csr', '-subj', '/CN=api.test');
  writeFileSync(join(dir, 'up.ext'), 'subjectAltName=DNS:api.test\n');
  openssl(
    ...['x509', '-req', '-in', 'up.csr', '-CA', 'up-ca.pem', '-CAkey', 'up-ca.key', '-CAcreateserial'],
    ...['-out', 'up.pem', '-days', '2', '-extfile', 'up.ext'],
  );
  upstreamCa = join(dir, 'up-ca.pem');
  const ca = await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell-ca')), 'test');
  cellCa = join(dir, 'cell-ca.pem');
  writeFileSync(cellCa, ca.certPem);

  server = createHttpsServer({ key: readFileSync(join(dir, 'up.key')), cert: readFileSync(join(dir, 'up.pem')) });
  server.on('request', (_req: IncomingMessage, res) => res.end('plain\n'));
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: true });
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers });
    if (req.url === '/unauthorized') {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nno way\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data: Buffer) => {
        const text = data.toString('utf8');
        if (text === 'who') ws.send(`you sent ${req.headers.authorization ?? 'nothing'}`);
        else if (text === 'bye') ws.close(4000, 'bye');
        else ws.send(`echo ${text}`);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  port = typeof address === 'object' && address ? address.port : 0;
});

after(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  server.closeAllConnections();
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('WebSocket through an inspected host', () => {
  it('relays an allowed upgrade both ways, with the proxy secret injected and masked, and logs it with byte counts', async () => {
    upgrades.length = 0;
    const gw = await startGateway({ allow: ['api.test'], rule: [{ host: 'api.test', paths: ['/ws'] }] }, [SECRET_ENV]);
    const ws = await openSocket(gw, '/ws?token=in-the-query', { authorization: 'Bearer from-the-cell' });
    await opened(ws);
    const echo = nextMessage(ws);
    ws.send('hello');
    assert.equal(await echo, 'echo hello');
    const big = 'x'.repeat(200_000); // several TLS records and frames' worth
    const bigEcho = nextMessage(ws);
    ws.send(big);
    assert.equal(await bigEcho, `echo ${big}`);
    const who = nextMessage(ws);
    ws.send('who');
    assert.equal(await who, `you sent Bearer ${'*'.repeat(SECRET.length)}`, 'the reflected secret is masked');
    const closed = closedSocket(ws);
    ws.send('bye');
    assert.equal(await closed, 4000, 'the close frame came through');

    assert.equal(upgrades.length, 1);
    const seen = upgrades[0]!;
    assert.equal(seen.url, '/ws?token=in-the-query');
    assert.equal(seen.headers.authorization, `Bearer ${SECRET}`, 'the gateway’s header replaced the cell’s');
    assert.equal(seen.headers.upgrade, 'websocket');
    assert.equal(seen.headers['sec-websocket-extensions'], undefined, 'no compression where a secret is masked');
    assert.equal(seen.headers['proxy-authorization'], undefined);

    await settle(gw.events, (e) => requests(e).length === 1 && e.some((x) => x.kind === 'connect'));
    const [event] = requests(gw.events);
    assert.ok(event);
    assert.equal(event.decision, 'allow');
    assert.equal(event.method, 'GET');
    assert.equal(event.path, '/ws', 'the query is not logged');
    assert.equal(event.status, 101);
    assert.deepEqual(event.injected, ['WS_KEY']);
    assert.equal(event.rule, 'api.test * /ws', 'the L7 rule that allowed it');
    assert.ok(event.bytesUp > 200_000 && event.bytesUp < 210_000, `bytesUp ${event.bytesUp}`);
    assert.ok(event.bytesDown > 200_000 && event.bytesDown < 210_000, `bytesDown ${event.bytesDown}`);
    assert.ok(!JSON.stringify(gw.events).includes(SECRET));
    const tunnelLine = gw.events.find((e) => e.kind === 'connect');
    assert.equal(tunnelLine?.inspected, true);
    assert.ok((tunnelLine?.bytesUp ?? 0) > event.bytesUp, 'the tunnel line counts the upstream TLS bytes');
    assert.ok((tunnelLine?.bytesDown ?? 0) > event.bytesDown);
  });

  it('keeps compression when no secret goes to the host', async () => {
    upgrades.length = 0;
    const gw = await startGateway({ allow: ['api.test'] });
    const ws = await openSocket(gw, '/plain');
    await opened(ws);
    const echo = nextMessage(ws);
    ws.send('deflated');
    assert.equal(await echo, 'echo deflated');
    assert.match(String(upgrades[0]?.headers['sec-websocket-extensions']), /permessage-deflate/);
    assert.match(ws.extensions, /permessage-deflate/);
    ws.close();
  });

  it('refuses an upgrade the L7 rules refuse with the 403 and its reason, and never sends it upstream', async () => {
    upgrades.length = 0;
    const gw = await startGateway({ allow: ['api.test'], rule: [{ host: 'api.test', paths: ['/ws'] }] });
    const denied = await refusal(await openSocket(gw, '/admin'));
    assert.equal(denied.status, 403);
    assert.equal(denied.headers['x-agentcell-denied'], 'no-matching-rule');
    assert.match(denied.body, /^agentcell: denied api\.test:\d+: no-matching-rule .*GET \/admin/);
    assert.equal(upgrades.length, 0);
    await settle(gw.events, (e) => requests(e).length === 1);
    const [event] = requests(gw.events);
    assert.equal(event?.decision, 'deny');
    assert.equal(event?.reason, 'no-matching-rule');
    assert.equal(event?.path, '/admin');
    assert.equal(event?.status, 403);
  });

  it('refuses other upgrades and a Host that is not the target', async () => {
    upgrades.length = 0;
    const gw = await startGateway({ allow: ['api.test'] });
    const raw = async (text: string): Promise<string> => {
      const tls = await tunnel(gw);
      let out = '';
      tls.setEncoding('utf8').on('data', (d: string) => (out += d));
      tls.write(text);
      await new Promise((resolve) => tls.once('close', resolve));
      return out;
    };
    const h2c = await raw(
      `GET / HTTP/1.1\r\nHost: api.test:${port}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n`,
    );
    assert.match(h2c, /^HTTP\/1\.1 403 /);
    assert.match(h2c, /X-Agentcell-Denied: unsupported/i);
    const host = await raw(
      `GET /ws HTTP/1.1\r\nHost: other.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    assert.match(host, /^HTTP\/1\.1 403 /);
    assert.match(host, /X-Agentcell-Denied: host-mismatch/i);
    assert.equal(upgrades.length, 0);
  });

  it('relays an upstream that answers the upgrade with an error, and logs its status', async () => {
    const gw = await startGateway({ allow: ['api.test'] });
    const answer = await refusal(await openSocket(gw, '/unauthorized'));
    assert.equal(answer.status, 401);
    assert.equal(answer.body, 'no way\n');
    assert.equal(answer.headers['x-agentcell-denied'], undefined);
    await settle(gw.events, (e) => requests(e).length === 1);
    const [event] = requests(gw.events);
    assert.equal(event?.decision, 'allow');
    assert.equal(event?.status, 401);
    assert.equal(event?.bytesDown, 7);
  });

  it('refuses the upgrade with a 502 when the upstream certificate is not trusted', async () => {
    upgrades.length = 0;
    const gw = await startGateway({ allow: ['api.test'] }, [], false);
    const denied = await refusal(await openSocket(gw, '/ws'));
    assert.equal(denied.status, 502);
    assert.equal(denied.headers['x-agentcell-denied'], 'upstream-cert-invalid');
    assert.equal(upgrades.length, 0);
    await settle(gw.events, (e) => requests(e).length === 1);
    assert.equal(requests(gw.events)[0]?.reason, 'upstream-cert-invalid');
  });

  it('closes an open WebSocket when a reload drops its host', async () => {
    const gw = await startGateway({ allow: ['api.test'] });
    const ws = await openSocket(gw, '/ws');
    await opened(ws);
    const echo = nextMessage(ws);
    ws.send('before');
    assert.equal(await echo, 'echo before');
    const closed = closedSocket(ws);
    assert.equal(gw.gateway.reload({ resolve: RESOLVE, allow: [] }).revoked, 1);
    assert.equal(await closed, 1006, 'cut, not closed by a frame');
    await settle(gw.events, (e) => e.some((x) => x.kind === 'connect'));
    assert.ok(gw.events.some((e) => e.kind === 'connect' && e.revoked === true));
  });
});

describe('ALPN on inspected hosts', () => {
  it('answers a client offering h2 and http/1.1 with http/1.1, and serves it', async () => {
    const gw = await startGateway({ allow: ['api.test'] });
    const tls = await tunnel(gw, ['h2', 'http/1.1']);
    assert.equal(tls.alpnProtocol, 'http/1.1');
    let out = '';
    tls.setEncoding('utf8').on('data', (d: string) => (out += d));
    tls.write(`GET /x HTTP/1.1\r\nHost: api.test:${port}\r\nConnection: close\r\n\r\n`);
    await new Promise((resolve) => tls.once('close', resolve));
    assert.match(out, /^HTTP\/1\.1 200 /);
    assert.match(out, /plain\n$/);
  });

  it('refuses a client offering h2 only (no protocol in common)', async () => {
    const gw = await startGateway({ allow: ['api.test'] });
    await assert.rejects(tunnel(gw, ['h2']), /no_application_protocol|ALPN|120/i);
  });
});

/** Run in the cell by its own node: a `ws` client through the cell's HTTPS_PROXY (CONNECT), trusting only what the cell trusts. */
const CELL_CLIENT = `
const http = require('node:http');
const tls = require('node:tls');
const WebSocket = require('ws');
const [host, port, path, authorization] = process.argv.slice(2);
const proxy = new URL(process.env.HTTPS_PROXY);
const credentials = Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password));
const connect = http.request({
  host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: host + ':' + port,
  headers: { 'proxy-authorization': 'Basic ' + credentials.toString('base64') },
});
connect.on('error', (e) => console.log(path + ' error ' + e.message));
connect.on('connect', (res, socket) => {
  const secure = tls.connect({ socket, servername: host, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
    console.log(path + ' alpn ' + secure.alpnProtocol);
    const ws = new WebSocket('wss://' + host + ':' + port + path, { createConnection: () => secure, headers: { authorization } });
    ws.on('open', () => ws.send('who'));
    ws.on('message', (data) => { console.log(path + ' got ' + data); ws.close(1000); });
    ws.on('close', (code) => console.log(path + ' closed ' + code));
    ws.on('unexpected-response', (_req, r) => { console.log(path + ' refused ' + r.statusCode + ' ' + r.headers['x-agentcell-denied']); secure.destroy(); });
    ws.on('error', () => undefined);
  });
  secure.on('error', (e) => console.log(path + ' tls-error ' + e.message));
});
connect.end();
`;

describe('WebSocket and ALPN from a real cell (bwrap)', () => {
  it('a cell’s WebSocket client gets its upgrade checked, the secret injected and masked, the frames relayed, and the log', async () => {
    const sb = makeSandbox({ 'ws-client.cjs': CELL_CLIENT });
    try {
      // The client library, as a project would have it in its node_modules.
      const wsDir = dirname(createRequire(import.meta.url).resolve('ws/package.json'));
      cpSync(wsDir, join(sb.workspace, 'node_modules', 'ws'), { recursive: true });
      writeFileSync(
        join(sb.workspace, 'agentcell.toml'),
        [
          '[network]',
          'mode = "allowlist"',
          'allow = ["api.test"]',
          'resolve = { "api.test" = "127.0.0.1" }',
          `upstream_ca = [${JSON.stringify(upstreamCa)}]`,
          '[[network.rule]]',
          'host = "api.test"',
          'paths = ["/ws"]',
          '[secrets.WS_KEY]',
          'from = "env:HOST_WS_KEY"',
          'inject = "proxy"',
          'host = "api.test"',
          'header = "Authorization"',
          'template = "Bearer {value}"',
          '',
        ].join('\n'),
      );
      upgrades.length = 0;
      const client = (path: string): string =>
        `/run/agentcell/node ws-client.cjs api.test ${port} ${path} "Bearer $WS_KEY"`;
      const script = [
        client('/ws'),
        client('/admin'),
        `echo "curl $(curl -sS --http2 -o /dev/null -w '%{http_version}' https://api.test:${port}/ws)"`,
      ].join('\n');
      const r = await agentcellAsync(sb, ['run', '--', 'sh', '-c', script], {
        env: { HOST_WS_KEY: SECRET },
        timeoutMs: 90_000,
      });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^\/ws alpn http\/1\.1$/m);
      assert.match(r.stdout, new RegExp(`^/ws got you sent Bearer \\*{${SECRET.length}}$`, 'm'));
      assert.match(r.stdout, /^\/ws closed 1000$/m);
      assert.match(r.stdout, /^\/admin refused 403 no-matching-rule$/m);
      assert.match(r.stdout, /^curl 1\.1$/m, 'curl offered h2 and used HTTP/1.1');
      assert.ok(!r.stdout.includes(SECRET));
      assert.equal(upgrades.length, 1, 'only the allowed upgrade reached the server');
      assert.equal(upgrades[0]?.headers.authorization, `Bearer ${SECRET}`);

      const log = await agentcellAsync(sb, ['egress', 'log', '--json']);
      assert.equal(log.status, 0, log.stderr);
      assert.ok(!log.stdout.includes(SECRET));
      const events = log.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as EgressEvent);
      const upgrade = events.find((e) => e.kind === 'request' && e.path === '/ws' && e.status === 101);
      assert.ok(upgrade, log.stdout);
      assert.equal(upgrade.decision, 'allow');
      assert.deepEqual(upgrade.injected, ['WS_KEY']);
      assert.ok(upgrade.bytesUp > 0 && upgrade.bytesDown > 0, JSON.stringify(upgrade));
      assert.ok(
        events.some((e) => e.kind === 'request' && e.path === '/admin' && e.reason === 'no-matching-rule'),
        log.stdout,
      );
    } finally {
      sb.cleanup();
    }
  });
});
