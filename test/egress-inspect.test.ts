import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as tlsConnect, rootCertificates, type SecureContext } from 'node:tls';
import {
  brotliCompressSync,
  brotliDecompressSync,
  deflateRawSync,
  deflateSync,
  gunzipSync,
  gzipSync,
  inflateRawSync,
  inflateSync,
} from 'node:zlib';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCerts } from './make-certs.js';
import { assertLogReadsBack, startTestGateway } from './test-gateway.js';
import { listen } from './helpers.js';
import { CANARY_HOST } from '../src/_internal/vocabulary.js';
import { createLeafMinter, loadOrCreateCellCa } from '../src/egress/cell/cell-ca.js';
import { cellCaFiles } from '../src/egress/cell/cell-trust.js';
import { readyCellCaPem } from '../src/egress/cell/ready-cell-ca.js';
import type { EgressGateway, GatewayInspectOptions, GatewayRules } from '../src/egress/gateway/egress-gateway.js';
import type { EgressEvent } from '../src/egress/log/egress-log.js';
import type { ProxySecret } from '../src/egress/rules/inspect-rules.js';
import { proxyAuthorization } from '../src/egress/gateway/proxy-auth.js';
import { distinctPemBlocks, upstreamTrustInSteps } from '../src/egress/gateway/upstream-trust.js';
import { createMaskStream } from '../src/egress/protocols/inspect/redact-stream.js';
import { readSpyLog, renderSpyRecord } from '../src/egress/log/spy-render.js';

/*
 * TLS inspection on loopback: real TLS both ways (a test CA made by test/make-certs.ts signs the
 * upstream servers; the cell CA made by agentcell signs what curl sees), real curl as
 * the client, names mapped to 127.0.0.1 by `resolve`.
 */

const SECRET = 'sk-real-secret-value-0123456789abcdef';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let dir: string;
let upstreamCa: string;
let cellCaPath: string;
let trusted: Server;
let untrusted: Server;
let trustedPort: number;
let untrustedPort: number;
const seen: Seen[] = [];
const gateways: EgressGateway[] = [];
/** Every gateway's logs and the events it reported, read back once all are closed. */
const logs: { events: EgressEvent[]; logPath: string; spyPath: string }[] = [];
/** What the upstream answers: `body`, or `chunks` written one by one (a tick apart) under `headers`. */
interface Reply {
  status: number;
  type: string;
  body: string;
  headers?: Record<string, string>;
  chunks?: Buffer[];
}
let responder: (req: Seen) => Reply = () => ({
  status: 200,
  type: 'text/plain',
  body: 'ok\n',
});

function handler(req: IncomingMessage, res: ServerResponse): void {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => (body += d));
  req.on('end', () => {
    const entry = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
    seen.push(entry);
    const reply = responder(entry);
    res.writeHead(reply.status, { 'content-type': reply.type, ...reply.headers });
    if (!reply.chunks) return void res.end(reply.body);
    const chunks = [...reply.chunks];
    const next = (): void => {
      const chunk = chunks.shift();
      if (chunk === undefined) return void res.end();
      res.write(chunk);
      setTimeout(next, 2);
    };
    next();
  });
}

const RESOLVE = { 'api.test': '127.0.0.1', 'second.test': '127.0.0.1', 'bad.test': '127.0.0.1' };

async function startGateway(
  rules: GatewayRules,
  secrets: ProxySecret[] = [],
  hooks: Pick<GatewayInspectOptions, 'onLlmRequest'> = {},
): Promise<{ port: number; token: string; events: EgressEvent[]; logPath: string; spyPath: string }> {
  const ca = await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell-ca')), 'test');
  const spyPath = join(dir, `spy-${gateways.length}.jsonl`);
  const gw = await startTestGateway(dir, {
    rules: { resolve: RESOLVE, ...rules },
    inspect: {
      leaves: createLeafMinter(ca),
      upstreamCa: [readFileSync(upstreamCa, 'utf8')],
      secrets,
      spyLogPath: spyPath,
      ...hooks,
    },
  });
  gateways.push(gw.gateway);
  logs.push({ events: gw.events, logPath: gw.logPath, spyPath });
  return { port: gw.port, token: gw.token, events: gw.events, logPath: gw.logPath, spyPath };
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function curl(gw: { port: number; token: string }, args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      [
        ...['-sS', '--max-time', '10', '-x', `http://127.0.0.1:${gw.port}`, '--proxy-user', `agentcell:${gw.token}`],
        ...['--cacert', cellCaPath],
        ...args,
      ],
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 20_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * CONNECT to `target`, TLS with `servername` (trusting the cell CA), then raw request
 * bytes; resolves with everything read until the server closes, or the TLS error code.
 */
function rawThroughGateway(
  gw: { port: number; token: string },
  target: string,
  servername: string,
  text: string,
): Promise<string> {
  return new Promise((resolve) => {
    const connect = httpRequest({
      host: '127.0.0.1',
      port: gw.port,
      method: 'CONNECT',
      path: target,
      headers: { 'proxy-authorization': proxyAuthorization(gw.token) },
    });
    connect.once('error', (error: NodeJS.ErrnoException) => resolve(`error ${error.code ?? error.message}`));
    connect.once('connect', (_response, socket) => {
      const tls = tlsConnect({ socket, servername, ca: readFileSync(cellCaPath, 'utf8') });
      let out = '';
      tls.once('error', (error: NodeJS.ErrnoException) => resolve(`${out}error ${error.code ?? error.message}`));
      tls.once('secureConnect', () => tls.write(text));
      tls.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
      tls.once('end', () => resolve(out));
      tls.setTimeout(5000, () => {
        tls.destroy();
        resolve(`${out}timeout`);
      });
    });
    connect.end();
  });
}

async function settle(events: EgressEvent[], count: number): Promise<void> {
  for (let i = 0; i < 100 && events.length < count; i++) await new Promise((r) => setTimeout(r, 20));
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentcell-inspect-'));
  const good = await makeCerts(dir, 'good', ['api.test', 'second.test']);
  const bad = await makeCerts(dir, 'bad', ['bad.test']);
  upstreamCa = good.ca;
  trusted = createHttpsServer({ key: good.key, cert: good.cert }, handler);
  untrusted = createHttpsServer({ key: bad.key, cert: bad.cert }, handler);
  [trustedPort, untrustedPort] = await Promise.all([listen(trusted), listen(untrusted)]);
  const ca = await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell-ca')), 'test');
  // What a cell trusts: its cell CA, plus (for hosts not inspected) what the servers really present.
  cellCaPath = join(dir, 'client-trust.pem');
  writeFileSync(cellCaPath, ca.certPem + readFileSync(good.ca, 'utf8'));
});

after(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  for (const log of logs) {
    assertLogReadsBack(log);
    readSpyLog(log.spyPath); // every spy record the real writer made passes its schema, or SPY_LOG_INVALID
  }
  for (const server of [trusted, untrusted]) {
    server.closeAllConnections();
    server.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('cell CA', () => {
  it('keeps the key 0600 in a 0700 directory, and is reused by the next run', async () => {
    const files = cellCaFiles(join(dir, 'cell-ca'));
    assert.equal(statSync(files.key).mode & 0o777, 0o600);
    assert.equal(statSync(files.dir).mode & 0o777, 0o700);
    const before = readFileSync(files.cert, 'utf8');
    await loadOrCreateCellCa(files, 'test');
    assert.equal(readFileSync(files.cert, 'utf8'), before);
    const text = execFileSync('openssl', ['x509', '-in', files.cert, '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /CA:TRUE, pathlen:0/);
    assert.match(text, /prime256v1/);
  });

  it('is remade when it is about to expire, and refused when its key is not private', async () => {
    const files = cellCaFiles(join(dir, 'renewing-ca'));
    const first = await loadOrCreateCellCa(files, 'renew');
    const soon = new Date(first.certificate.notAfter.getTime() - 10 * 86_400_000);
    const second = await loadOrCreateCellCa(files, 'renew', soon);
    assert.notEqual(second.certPem, first.certPem);
    chmodSync(files.key, 0o644);
    await assert.rejects(loadOrCreateCellCa(files, 'renew'), /not a private \(0600\) file/);
  });

  // A run whose CA is ready starts its cell before loading the X.509 library; anything else
  // goes through loadOrCreateCellCa (made, renewed or refused before the cell starts).
  it('is ready as it is only when its key is private, ECDSA P-256, the certificate’s, and a month from expiry', async () => {
    const files = cellCaFiles(join(dir, 'ready-ca'));
    assert.equal(readyCellCaPem(files), undefined, 'no CA yet');
    const ca = await loadOrCreateCellCa(files, 'ready');
    assert.equal(readyCellCaPem(files), ca.certPem);
    const notAfter = ca.certificate.notAfter.getTime();
    assert.equal(readyCellCaPem(files, new Date(notAfter - 40 * 86_400_000)), ca.certPem);
    assert.equal(readyCellCaPem(files, new Date(notAfter - 10 * 86_400_000)), undefined, 'about to expire');
    chmodSync(files.key, 0o640);
    assert.equal(readyCellCaPem(files), undefined, 'key readable by the group');
    chmodSync(files.key, 0o600);
    const key = readFileSync(files.key, 'utf8');
    const other = cellCaFiles(join(dir, 'other-ca'));
    await loadOrCreateCellCa(other, 'other');
    writeFileSync(files.key, readFileSync(other.key), { mode: 0o600 });
    assert.equal(readyCellCaPem(files), undefined, "another CA's key");
    writeFileSync(files.key, execFileSync('openssl', ['genrsa', '2048'], { encoding: 'utf8' }), { mode: 0o600 });
    assert.equal(readyCellCaPem(files), undefined, 'an RSA key');
    writeFileSync(files.key, 'not a key\n', { mode: 0o600 });
    assert.equal(readyCellCaPem(files), undefined, 'garbage');
    writeFileSync(files.key, key, { mode: 0o600 });
    writeFileSync(files.cert, readFileSync(other.cert));
    assert.equal(readyCellCaPem(files), undefined, "another CA's certificate");
    writeFileSync(files.cert, ca.certPem);
    assert.equal(readyCellCaPem(files), ca.certPem, 'whole again');
  });
});

describe('inspected HTTPS through the gateway', () => {
  it('terminates TLS with the cell CA, forwards, and logs method/path/status/bytes', async () => {
    seen.length = 0;
    const gw = await startGateway({ allow: ['api.test'], inspect: ['api.test'] });
    const r = await curl(gw, [
      // Only the cell CA: what curl is shown was minted by the gateway.
      ...['--cacert', cellCaFiles(join(dir, 'cell-ca')).cert],
      '-D',
      '-',
      `https://api.test:${trustedPort}/hello?q=1`,
      `https://api.test:${trustedPort}/again`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /HTTP\/1\.1 200/);
    assert.equal((r.stdout.match(/^ok$/gm) ?? []).length, 2);
    // Two requests, one tunnel: keep-alive inside the inspected TLS.
    assert.deepEqual(
      seen.map((s) => s.url),
      ['/hello?q=1', '/again'],
    );
    await settle(gw.events, 3);
    const requests = gw.events.filter((e) => e.kind === 'request');
    assert.deepEqual(
      requests.map((e) => [e.method, e.path, e.status, e.decision]),
      [
        ['GET', '/hello', 200, 'allow'],
        ['GET', '/again', 200, 'allow'],
      ],
    );
    assert.ok(requests.every((e) => e.bytesDown > 0));
    const tunnel = gw.events.find((e) => e.kind === 'connect');
    assert.equal(tunnel?.inspected, true);
    assert.ok((tunnel?.bytesUp ?? 0) > 0 && (tunnel?.bytesDown ?? 0) > 0, 'the upstream TLS bytes are counted');
    await Promise.all(gateways.splice(gateways.length - 1).map((g) => g.close())); // flushes the log
    const logged = readFileSync(gw.logPath, 'utf8').trim().split('\n');
    assert.equal(logged.length, 3);
  });

  it('refuses a Host header that differs from the SNI and CONNECT host, with a reason', async () => {
    seen.length = 0;
    const gw = await startGateway({ allow: ['api.test', 'second.test'], inspect: ['api.test', 'second.test'] });
    const r = await curl(gw, ['-i', '-H', `Host: second.test:${trustedPort}`, `https://api.test:${trustedPort}/x`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 403/m);
    assert.match(r.stdout, /^X-Agentcell-Denied: host-mismatch\r?$/im);
    assert.equal(seen.length, 0, 'nothing reached the server');
    // Positive control: the right Host passes.
    const ok = await curl(gw, ['-i', `https://second.test:${trustedPort}/x`]);
    assert.match(ok.stdout, /^HTTP\/1\.1 200 OK/m);
  });

  it('refuses a second Host header, and a ClientHello naming another host than the CONNECT', async () => {
    seen.length = 0;
    const gw = await startGateway({ allow: ['api.test', 'second.test'], inspect: ['api.test', 'second.test'] });
    const target = `api.test:${trustedPort}`;
    const twice = await rawThroughGateway(
      gw,
      target,
      'api.test',
      `GET /x HTTP/1.1\r\nHost: ${target}\r\nHost: second.test:${trustedPort}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(twice, /^HTTP\/1\.1 403/);
    assert.match(twice, /X-Agentcell-Denied: host-mismatch/);
    const sni = await rawThroughGateway(gw, target, 'second.test', 'GET / HTTP/1.1\r\n\r\n');
    assert.match(sni, /error/);
    assert.equal(seen.length, 0);
    const ok = await rawThroughGateway(
      gw,
      target,
      'api.test',
      `GET /x HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(ok, /^HTTP\/1\.1 200/, 'positive control');
    await settle(gw.events, 5);
    assert.ok(gw.events.some((e) => e.kind === 'connect' && e.reason === 'sni-mismatch' && e.decision === 'deny'));
  });

  it('keeps one client connection across an upstream that closed its idle connection (reconnects, checked again)', async () => {
    seen.length = 0;
    const gw = await startGateway({ allow: ['api.test'], inspect: ['api.test'] });
    const previous = trusted.keepAliveTimeout;
    trusted.keepAliveTimeout = 50;
    let upstreamConnections = 0;
    const count = (): void => void upstreamConnections++;
    trusted.on('secureConnection', count);
    try {
      const target = `api.test:${trustedPort}`;
      const answers = await new Promise<string[]>((resolve, reject) => {
        const connect = httpRequest({
          host: '127.0.0.1',
          port: gw.port,
          method: 'CONNECT',
          path: target,
          headers: { 'proxy-authorization': proxyAuthorization(gw.token) },
        });
        connect.once('error', reject);
        connect.once('connect', (_response, socket) => {
          const tls = tlsConnect({ socket, servername: 'api.test', ca: readFileSync(cellCaPath, 'utf8') });
          const got: string[] = [];
          let buffer = '';
          tls.once('error', reject);
          tls.once('secureConnect', () => tls.write(`GET /first HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
          tls.setEncoding('utf8').on('data', (chunk: string) => {
            buffer += chunk;
            if (!buffer.includes('ok\n')) return;
            got.push(buffer.split('\r\n')[0] ?? '');
            buffer = '';
            if (got.length === 1)
              setTimeout(() => tls.write(`GET /second HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`), 300);
            else resolve(got);
          });
        });
        connect.end();
      });
      assert.deepEqual(answers, ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
      assert.deepEqual(
        seen.map((x) => x.url),
        ['/first', '/second'],
      );
      assert.equal(upstreamConnections, 2, 'the gateway opened a second upstream connection');
    } finally {
      trusted.off('secureConnection', count);
      trusted.keepAliveTimeout = previous;
    }
  });

  it('inspects SOCKS5 tunnels the same way', async () => {
    seen.length = 0;
    const gw = await startGateway({
      allow: ['api.test'],
      rule: [{ host: 'api.test', methods: ['GET'], paths: ['/ok'] }],
    });
    const socks = ['--proxy', `socks5h://agentcell:${gw.token}@127.0.0.1:${gw.port}`];
    const r = await curl(gw, [
      ...socks,
      '-w',
      '%{http_code}\\n',
      '-o',
      '/dev/null',
      `https://api.test:${trustedPort}/ok`,
    ]);
    const denied = await curl(gw, [
      ...socks,
      '-w',
      '%{http_code}\\n',
      '-o',
      '/dev/null',
      `https://api.test:${trustedPort}/no`,
    ]);
    assert.equal(r.stdout.trim(), '200', r.stderr);
    assert.equal(denied.stdout.trim(), '403');
    await settle(gw.events, 4);
    assert.ok(gw.events.some((e) => e.kind === 'socks' && e.inspected === true));
    assert.deepEqual(
      seen.map((x) => x.url),
      ['/ok'],
    );
  });

  it('a reload that leaves out inspect/rule keeps the L7 rules; one that changes them applies to the next request', async () => {
    seen.length = 0;
    const gw = await startGateway({ allow: ['api.test'], rule: [{ host: 'api.test', paths: ['/ok'] }] });
    const gateway = gateways[gateways.length - 1];
    gateway?.reload({ resolve: RESOLVE, allow: ['api.test'] });
    const kept = await curl(gw, ['-w', '%{http_code}\\n', '-o', '/dev/null', `https://api.test:${trustedPort}/other`]);
    assert.equal(kept.stdout.trim(), '403');
    gateway?.reload({ resolve: RESOLVE, allow: ['api.test'], rule: [{ host: 'api.test', paths: ['/other'] }] });
    const changed = await curl(gw, [
      '-w',
      '%{http_code}\\n',
      '-o',
      '/dev/null',
      `https://api.test:${trustedPort}/other`,
    ]);
    assert.equal(changed.stdout.trim(), '200');
  });

  it('refuses an upstream whose certificate is not trusted', async () => {
    seen.length = 0;
    const gw = await startGateway({ allow: ['bad.test'], inspect: ['bad.test'] });
    const r = await curl(gw, ['-i', `https://bad.test:${untrustedPort}/`]);
    assert.match(r.stdout, /^HTTP\/1\.1 502/m);
    assert.match(r.stdout, /^X-Agentcell-Denied: upstream-cert-invalid\r?$/im);
    assert.equal(seen.length, 0);
  });

  it('inspects an IP target (leaf with an IP SAN) and refuses an upstream certificate that does not name it', async () => {
    seen.length = 0;
    const gw = await startGateway({ allow: [`127.0.0.1:${trustedPort}`], inspect: ['127.0.0.1'] });
    const r = await curl(gw, ['-i', `https://127.0.0.1:${trustedPort}/`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 502/m);
    assert.match(r.stdout, /X-Agentcell-Denied: upstream-cert-invalid/);
    assert.match(r.stdout, /ERR_TLS_CERT_ALTNAME_INVALID/);
    assert.equal(seen.length, 0);
  });

  it('cleartext to an inspected host is refused', async () => {
    const gw = await startGateway({ allow: ['api.test:80', 'api.test'], inspect: ['api.test'] });
    const r = await curl(gw, ['-i', 'http://api.test/']);
    assert.match(r.stdout, /^X-Agentcell-Denied: inspect-needs-tls\r?$/im);
  });

  it('enforces L7 rules: GET /ok passes, POST /ok and GET /other get a 403 with the reason', async () => {
    seen.length = 0;
    const gw = await startGateway({
      allow: ['api.test'],
      rule: [{ host: 'api.test', methods: ['GET'], paths: ['/ok', '/v1/*'] }],
    });
    const base = `https://api.test:${trustedPort}`;
    const r = await curl(gw, [
      ...['-i', `${base}/ok`, `${base}/v1/a/b`, `${base}/other`, `${base}/ok/../other`, '--path-as-is'],
    ]);
    const post = await curl(gw, ['-i', '-X', 'POST', '-d', 'x', `${base}/ok`]);
    assert.deepEqual(
      seen.map((s) => `${s.method} ${s.url}`),
      ['GET /ok', 'GET /v1/a/b'],
    );
    const statuses = [...r.stdout.matchAll(/^HTTP\/1\.1 (\d+) (?!Connection)/gm)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '200', '403', '400']);
    assert.match(r.stdout, /X-Agentcell-Denied: no-matching-rule/);
    assert.match(
      r.stdout,
      /agentcell: denied api\.test:\d+: no-matching-rule \(no \[\[network\.rule\]\] .* GET \/other/,
    );
    assert.match(post.stdout, /^HTTP\/1\.1 403/m);
    assert.match(post.stdout, /X-Agentcell-Denied: no-matching-rule/);
    await settle(gw.events, 6);
    const denied = gw.events.filter((e) => e.kind === 'request' && e.decision === 'deny');
    assert.deepEqual(
      denied.map((e) => `${e.method} ${e.path} ${e.status}`).sort(),
      ['GET /ok/../other 400', 'GET /other 403', 'POST /ok 403'].sort(),
    );
  });
});

/** The secret the gateway injects for api.test in the suites below. */
const secret: ProxySecret = {
  name: 'API_KEY',
  host: 'api.test',
  header: 'Authorization',
  headerValue: `Bearer ${SECRET}`,
  value: SECRET,
};

describe('upstream trust', () => {
  it('holds each CA it is given once: copies are dropped, no CA is lost', () => {
    const good = readFileSync(upstreamCa, 'utf8');
    const blocks = distinctPemBlocks([good, `${good}\n${good}`, ...rootCertificates, rootCertificates.join('\n')]);
    assert.equal(blocks.length, 1 + new Set(rootCertificates).size);
    const compact = (pem: string): string => pem.replace(/\s+/g, '');
    assert.ok(blocks.some((block) => compact(block) === compact(good)));
    for (const root of rootCertificates) assert.ok(blocks.some((block) => compact(block) === compact(root)));
  });

  it('built in steps, or the rest at once when asked for midway, it trusts the CAs given and no other', async () => {
    const good = readFileSync(upstreamCa, 'utf8');
    const verifies = (secureContext: SecureContext, port: number, servername: string): Promise<boolean> =>
      new Promise((resolve) => {
        const socket = tlsConnect({ host: '127.0.0.1', port, servername, secureContext }, () => {
          resolve(socket.authorized);
          socket.destroy();
        });
        socket.on('error', () => resolve(false));
      });
    // The CA the upstream chains to comes last, in the last step.
    const stepped = upstreamTrustInSteps([...rootCertificates, good]);
    let steps = 1;
    while (!stepped.step()) steps++;
    assert.ok(steps >= Math.ceil(new Set(rootCertificates).size / 16), `built in ${steps} steps`);
    assert.equal(await verifies(stepped.context(), trustedPort, 'api.test'), true);
    assert.equal(await verifies(stepped.context(), untrustedPort, 'bad.test'), false);
    const midway = upstreamTrustInSteps([...rootCertificates, good]);
    midway.step();
    assert.equal(await verifies(midway.context(), trustedPort, 'api.test'), true);
    assert.equal(await verifies(upstreamTrustInSteps(rootCertificates).context(), trustedPort, 'api.test'), false);
    // A block OpenSSL cannot parse is skipped, as createSecureContext skips it: it trusts nothing.
    const broken = upstreamTrustInSteps(['-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----']);
    assert.equal(await verifies(broken.context(), trustedPort, 'api.test'), false);
  });

  it('built before the first connection (warmUp) it verifies the same: a trusted upstream passes, an untrusted one is refused', async () => {
    seen.length = 0;
    const ca = await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell-ca')), 'test');
    const good = readFileSync(upstreamCa, 'utf8');
    const gw = await startTestGateway(dir, {
      rules: { resolve: RESOLVE, allow: ['api.test', 'bad.test'], inspect: ['api.test', 'bad.test'] },
      inspect: {
        leaves: createLeafMinter(ca),
        upstreamCa: [...rootCertificates, good, good],
        secrets: [],
        spyLogPath: join(dir, 'spy-warm.jsonl'),
      },
    });
    gateways.push(gw.gateway);
    logs.push({ events: gw.events, logPath: gw.logPath, spyPath: join(dir, 'spy-warm.jsonl') });
    gw.gateway.warmUp();
    const ok = await curl(gw, ['-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${trustedPort}/`]);
    assert.equal(ok.stdout, '200', ok.stderr);
    assert.equal(seen.length, 1);
    const bad = await curl(gw, ['-i', `https://bad.test:${untrustedPort}/`]);
    assert.match(bad.stdout, /^X-Agentcell-Denied: upstream-cert-invalid\r?$/im);
    assert.equal(seen.length, 1);
  });

  it('warmUp after refusing a host (the canaries’ probe) starts nothing before that refusal, then serves the same', async () => {
    seen.length = 0;
    const minter = createLeafMinter(await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell-ca')), 'test'));
    let warmed = 0;
    const gw = await startTestGateway(dir, {
      rules: { resolve: RESOLVE, allow: ['api.test'], inspect: ['api.test'] },
      inspect: {
        leaves: { secureContext: (host) => minter.secureContext(host), warmUp: () => void warmed++ },
        upstreamCa: [readFileSync(upstreamCa, 'utf8')],
        secrets: [],
        spyLogPath: join(dir, 'spy-after.jsonl'),
      },
    });
    gateways.push(gw.gateway);
    logs.push({ events: gw.events, logPath: gw.logPath, spyPath: join(dir, 'spy-after.jsonl') });
    gw.gateway.warmUp({ afterRefusing: CANARY_HOST.toUpperCase() });
    const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    // Another host refused: not the one it waits for.
    const other = await curl(gw, ['-o', '/dev/null', '-w', '%{http_code}', 'https://elsewhere.test/']);
    assert.notEqual(other.code, 0);
    await tick();
    assert.equal(warmed, 0, 'nothing warmed up before the probe');
    const probe = await curl(gw, ['-i', `https://${CANARY_HOST}/`]);
    assert.match(probe.stdout + probe.stderr, /403/);
    await tick();
    assert.equal(warmed, 1, 'warmed up once the probe was refused');
    await curl(gw, ['-i', `https://${CANARY_HOST}/`]);
    await tick();
    assert.equal(warmed, 1, 'once');
    const ok = await curl(gw, ['-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${trustedPort}/`]);
    assert.equal(ok.stdout, '200', ok.stderr);
    assert.equal(seen.length, 1);
  });
});

describe('proxy-injected secrets', () => {
  it('masks the secret in what an upstream reflects back (headers and body, also split across chunks)', async () => {
    seen.length = 0;
    responder = (req) => ({
      status: 200,
      type: 'application/json',
      body: JSON.stringify({ youSent: req.headers.authorization, accept: req.headers['accept-encoding'] ?? null }),
    });
    try {
      const gw = await startGateway({ allow: ['api.test'] }, [secret]);
      const r = await curl(gw, ['-i', '--compressed', `https://api.test:${trustedPort}/echo`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(seen[0]?.headers.authorization, `Bearer ${SECRET}`, 'positive control: the server got it');
      assert.ok(!r.stdout.includes(SECRET), r.stdout);
      assert.match(r.stdout, new RegExp(`"youSent":"Bearer \\*{${SECRET.length}}"`));
      assert.match(r.stdout, /"accept":"identity"/);
    } finally {
      responder = () => ({ status: 200, type: 'text/plain', body: 'ok\n' });
    }
    // Chunk boundaries: a value split across writes is still masked, and nothing else is held back.
    const mask = createMaskStream([Buffer.from('s3cr3t-value')]);
    const out: Buffer[] = [];
    mask.on('data', (chunk: Buffer) => out.push(chunk));
    mask.write('event: a\ndata: s3cr');
    mask.write('3t-value and more\n');
    mask.write('tail s3');
    await new Promise<void>((resolve) => mask.end('x', resolve));
    assert.equal(Buffer.concat(out).toString(), 'event: a\ndata: ************ and more\ntail s3x');
    assert.equal(out[0]?.toString(), 'event: a\ndata: ', 'only the possible start of a value waits');
  });

  it('adds the header for the secret host only, replacing one the cell sent; logs lack the value', async () => {
    seen.length = 0;
    const gw = await startGateway({ allow: ['api.test', 'second.test'] }, [secret]);
    const r = await curl(gw, [
      ...['-H', 'Authorization: Bearer placeholder-from-cell', `https://api.test:${trustedPort}/v1/x`],
    ]);
    assert.equal(r.code, 0, r.stderr);
    const second = await curl(gw, ['-H', 'Authorization: Bearer cell-own', `https://second.test:${trustedPort}/y`]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(seen.length, 2);
    assert.equal(seen[0]?.headers.authorization, `Bearer ${SECRET}`);
    // The second host is not the secret's: it gets what the cell sent, never the secret.
    assert.equal(seen[1]?.headers.authorization, 'Bearer cell-own');
    await settle(gw.events, 4);
    await Promise.all(gateways.splice(gateways.length - 1).map((g) => g.close()));
    const log = readFileSync(gw.logPath, 'utf8');
    assert.ok(!log.includes(SECRET));
    assert.match(log, /"injected":\["API_KEY"\]/);
  });
});

describe('proxy-injected secrets, reflected encoded', () => {
  const PROBE = 'probe-not-secret-value-9876543210fedcba';

  /** Every reading of `body` a cell could try: raw, decompressed, base64 at each offset, hex, URL and JSON decoded. */
  function readings(body: Buffer): string[] {
    const out: string[] = [body.toString('latin1')];
    for (const inflate of [gunzipSync, inflateSync, inflateRawSync, brotliDecompressSync])
      try {
        out.push(inflate(body).toString('latin1'));
      } catch {
        // not this coding
      }
    for (const text of [...out]) {
      for (const alphabet of ['base64', 'base64url'] as const)
        for (let skip = 0; skip < 4; skip++) out.push(Buffer.from(text.slice(skip), alphabet).toString('latin1'));
      out.push(Buffer.from(text.replace(/[^0-9a-fA-F]/g, ''), 'hex').toString('latin1'));
      try {
        out.push(decodeURIComponent(text));
      } catch {
        // not URL-encoded
      }
      try {
        out.push(String(JSON.parse(text)));
      } catch {
        // not JSON
      }
    }
    return out;
  }

  const encodings: Record<string, (value: string) => Omit<Reply, 'status' | 'type' | 'body'> & { body?: string }> = {
    gzip: (v) => ({ headers: { 'content-encoding': 'gzip' }, chunks: [gzipSync(v)] }),
    deflate: (v) => ({ headers: { 'content-encoding': 'deflate' }, chunks: [deflateSync(v)] }),
    'raw deflate': (v) => ({ headers: { 'content-encoding': 'deflate' }, chunks: [deflateRawSync(v)] }),
    brotli: (v) => ({ headers: { 'content-encoding': 'br' }, chunks: [brotliCompressSync(v)] }),
    'gzip transfer-coding': (v) => ({ headers: { 'transfer-encoding': 'gzip, chunked' }, chunks: [gzipSync(v)] }),
    'gzip in 1-byte writes': (v) => ({
      headers: { 'content-encoding': 'gzip' },
      chunks: [...gzipSync(v)].map((b) => Buffer.from([b])),
    }),
    'base64 offset 0': (v) => ({ body: Buffer.from(v).toString('base64') }),
    'base64 offset 1': (v) => ({ body: Buffer.from(`x${v}`).toString('base64') }),
    'base64 offset 2': (v) => ({ body: Buffer.from(`xy${v}`).toString('base64') }),
    'base64url offset 1': (v) => ({ body: Buffer.from(`x${v}`).toString('base64url') }),
    'hex lower': (v) => ({ body: Buffer.from(v).toString('hex') }),
    'hex upper': (v) => ({ body: Buffer.from(v).toString('hex').toUpperCase() }),
    'url-encoded': (v) => ({ body: encodeURIComponent(v) }),
    'json \\u-escaped': (v) => ({
      body: JSON.stringify(v).replace(/[^"]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`),
    }),
    'hex split across writes': (v) => ({
      chunks: [...Buffer.from(Buffer.from(v).toString('hex'))].map((b) => Buffer.from([b])),
    }),
  };

  it('never hands the cell the secret gzipped, deflated, brotli, base64, hex, URL- or JSON-encoded, split or not', async () => {
    let echo: 'authorization' | 'x-probe' = 'authorization';
    let encode = encodings['gzip']!;
    responder = (req) => {
      const value = String(req.headers[echo] ?? '');
      const reply = encode(value);
      return { status: 200, type: 'application/octet-stream', body: reply.body ?? '', ...reply };
    };
    try {
      const gw = await startGateway({ allow: ['api.test'] }, [secret]);
      for (const [name, how] of Object.entries(encodings)) {
        encode = how;
        for (const which of ['authorization', 'x-probe'] as const) {
          echo = which;
          seen.length = 0;
          const out = join(dir, 'reflected.bin');
          rmSync(out, { force: true });
          const r = await curl(gw, ['-o', out, '-H', `x-probe: ${PROBE}`, `https://api.test:${trustedPort}/echo`]);
          assert.equal(r.code, 0, `${name}: ${r.stderr}`);
          assert.equal(seen[0]?.headers.authorization, `Bearer ${SECRET}`, 'the upstream got the secret');
          assert.equal(seen[0]?.headers['accept-encoding'], 'identity', 'the gateway asked for no compression');
          const found = readings(readFileSync(out)).some((text) => text.includes(which === 'x-probe' ? PROBE : SECRET));
          if (which === 'x-probe') assert.ok(found, `${name}: positive control: a non-secret header comes back intact`);
          else assert.ok(!found, `${name}: the secret came back`);
        }
      }
    } finally {
      responder = () => ({ status: 200, type: 'text/plain', body: 'ok\n' });
    }
  });

  it('refuses a compressed answer it can not decode (502 response-encoding); other hosts pass as sent', async () => {
    responder = (req) => ({
      status: 200,
      type: 'application/octet-stream',
      body: String(req.headers.authorization),
      headers: { 'content-encoding': 'zstd' },
    });
    try {
      const gw = await startGateway({ allow: ['api.test', 'second.test'] }, [secret]);
      const r = await curl(gw, ['-i', `https://api.test:${trustedPort}/echo`]);
      assert.match(r.stdout, /^HTTP\/1\.1 502/m);
      assert.match(r.stdout, /X-Agentcell-Denied: response-encoding/i);
      assert.ok(!r.stdout.includes(SECRET));
      // Control: a host without a secret gets the upstream's answer as it is.
      const plain = await curl(gw, ['-i', '-H', 'Authorization: mine', `https://second.test:${trustedPort}/echo`]);
      assert.match(plain.stdout, /^HTTP\/1\.1 200 OK/m);
      assert.match(plain.stdout, /content-encoding: zstd/i);
      assert.ok(plain.stdout.endsWith('mine'));
    } finally {
      responder = () => ({ status: 200, type: 'text/plain', body: 'ok\n' });
    }
  });
});

describe('spy', () => {
  const anthropicSecret: ProxySecret = {
    name: 'ANTHROPIC_API_KEY',
    host: 'api.test',
    header: 'x-api-key',
    headerValue: SECRET,
    value: SECRET,
  };

  it('captures Anthropic (streamed) and OpenAI calls and renders model, messages, tool calls and tokens', async () => {
    responder = (req) => {
      if (req.url === '/v1/messages')
        return {
          status: 200,
          type: 'text/event-stream',
          body: [
            'event: message_start',
            'data: {"type":"message_start","message":{"model":"claude-test-1","usage":{"input_tokens":21,"output_tokens":1}}}',
            '',
            'event: content_block_start',
            'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
            '',
            'event: content_block_delta',
            'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me look."}}',
            '',
            'event: content_block_start',
            'data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"read_file","input":{}}}',
            '',
            'event: content_block_delta',
            'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"path\\":\\"README.md\\"}"}}',
            '',
            'event: message_delta',
            'data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":17}}',
            '',
            '',
          ].join('\n'),
        };
      return {
        status: 200,
        type: 'application/json',
        body: JSON.stringify({
          model: 'gpt-test-4',
          choices: [
            {
              message: {
                role: 'assistant',
                content: null,
                tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
              },
            },
          ],
          usage: { prompt_tokens: 11, completion_tokens: 7 },
        }),
      };
    };
    const gw = await startGateway({ allow: ['api.test'] }, [anthropicSecret]);
    const anthropic = await curl(gw, [
      ...['-H', 'content-type: application/json', '-H', 'x-api-key: placeholder'],
      '-d',
      JSON.stringify({
        model: 'claude-test-1',
        stream: true,
        system: 'You are terse.',
        messages: [{ role: 'user', content: `read the readme, my key is ${SECRET}` }],
      }),
      `https://api.test:${trustedPort}/v1/messages`,
    ]);
    assert.equal(anthropic.code, 0, anthropic.stderr);
    const openai = await curl(gw, [
      ...['-H', 'content-type: application/json', '-H', `authorization: Bearer ${SECRET}`],
      '-d',
      JSON.stringify({ model: 'gpt-test-4', messages: [{ role: 'user', content: 'weather in Paris?' }] }),
      `https://api.test:${trustedPort}/v1/chat/completions`,
    ]);
    assert.equal(openai.code, 0, openai.stderr);
    await settle(gw.events, 3);
    await Promise.all(gateways.splice(gateways.length - 1).map((g) => g.close()));
    assert.equal(statSync(gw.spyPath).mode & 0o777, 0o600);
    const raw = readFileSync(gw.spyPath, 'utf8');
    assert.ok(!raw.includes(SECRET), 'the secret is redacted in the spy log');
    assert.doesNotMatch(raw, /placeholder|authorization|x-api-key/i, 'no headers are kept');
    const records = readSpyLog(gw.spyPath);
    assert.equal(records.length, 2);
    const [first, second] = records.map((r) => renderSpyRecord(r));
    assert.match(first ?? '', /anthropic claude-test-1/);
    assert.match(first ?? '', /system: You are terse\./);
    assert.match(first ?? '', /user: read the readme, my key is \[redacted:ANTHROPIC_API_KEY\]/);
    assert.match(first ?? '', /assistant: Let me look\./);
    assert.match(first ?? '', /tool call read_file \{"path":"README\.md"\}/);
    assert.match(first ?? '', /tokens: in 21, out 17/);
    assert.match(second ?? '', /openai-chat gpt-test-4/);
    assert.match(second ?? '', /user: weather in Paris\?/);
    assert.match(second ?? '', /tool call get_weather \{"city":"Paris"\}/);
    assert.match(second ?? '', /tokens: in 11, out 7/);
  });
});

describe('turn boundaries (the run’s turn checkpoints)', () => {
  const llmCall = (gw: { port: number; token: string }, extra: string[] = []): Promise<Ran> =>
    curl(gw, [...extra, '-d', '{"model":"m","messages":[]}', `https://api.test:${trustedPort}/v1/messages`]);
  const until = async (what: string, done: () => boolean): Promise<void> => {
    for (let i = 0; i < 250 && !done(); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(done(), what);
  };

  it('an LLM request goes upstream at once; its answer reaches the client only once the turn is taken', async () => {
    responder = () => ({ status: 200, type: 'application/json', body: '{"answer":1}' });
    let take = (): void => undefined;
    const starts: string[] = [];
    const gw = await startGateway({ allow: ['api.test'], inspect: ['api.test'] }, [], {
      onLlmRequest: (start) => {
        starts.push(`${start.provider} ${start.host} ${start.path}`);
        return new Promise<void>((resolve) => (take = resolve));
      },
    });
    const before = seen.length;
    let answered = false;
    const call = llmCall(gw).then((r) => ((answered = true), r));
    await until('the upstream has the request while the turn is being taken', () => seen.length > before);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(answered, false, 'the answer is held while the turn is taken');
    take();
    const r = await call;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '{"answer":1}');
    assert.deepEqual(starts, ['anthropic api.test /v1/messages']);
    // Not an LLM API path: no turn, nothing held.
    const plain = await curl(gw, [`https://api.test:${trustedPort}/plain`]);
    assert.equal(plain.stdout, '{"answer":1}');
    assert.equal(starts.length, 1);
  });

  it('a client gone while its answer is held is logged once, and the gateway goes on serving', async () => {
    responder = () => ({ status: 200, type: 'text/plain', body: 'ok\n' });
    const takes: (() => void)[] = [];
    const gw = await startGateway({ allow: ['api.test'], inspect: ['api.test'] }, [], {
      onLlmRequest: () => new Promise<void>((resolve) => takes.push(resolve)),
    });
    const before = seen.length;
    const gone = await llmCall(gw, ['--max-time', '1']);
    assert.notEqual(gone.code, 0, 'curl gave up before the turn was taken');
    assert.ok(seen.length > before, 'the request went upstream');
    for (const take of takes) take();
    await new Promise((r) => setTimeout(r, 100));
    const next = llmCall(gw);
    await until('the second request opens its turn', () => takes.length === 2);
    takes[1]?.();
    const r = await next;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ok\n');
    await settle(gw.events, 2);
    const requests = gw.events.filter((e) => e.kind === 'request');
    assert.equal(requests.length, 2, JSON.stringify(gw.events));
  });
});
