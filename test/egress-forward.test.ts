import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request, type IncomingMessage } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createResponseReader, ResponseParseError, type ResponseRead } from '../src/egress/protocols/http1-response.js';
import { listen } from './helpers.js';
import { startTestGateway, type TestGateway } from './test-gateway.js';

/*
 * Plain-HTTP forwarding (`GET http://host/…` to the proxy): the gateway reads the upstream's
 * response itself (http1-response.ts) and writes the body on from its pooled reads. Real
 * sockets on loopback; the upstream is a raw TCP server so each framing is sent byte-exact.
 */

/** Every read of `bytes` fed in pieces of `size` (1 = byte by byte), gathered. */
function readAll(method: string, bytes: Buffer, size: number): { reads: ResponseRead[]; body: string; done: boolean } {
  const reader = createResponseReader(method);
  const reads: ResponseRead[] = [];
  for (let at = 0; at < bytes.length; at += size) reads.push(reader.push(bytes.subarray(at, at + size)));
  return {
    reads,
    body: Buffer.concat(reads.flatMap((r) => r.body)).toString('latin1'),
    done: reads.at(-1)?.done ?? false,
  };
}

const CHUNKED =
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n' +
  '5;ext=1\r\nhello\r\n1\r\n,\r\n000006\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT';

describe('http1-response: reading an upstream response', () => {
  it('gives the same head and body whether the bytes come at once or one by one', () => {
    const cases: [string, string, string][] = [
      ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA', 'hello'],
      ['GET', CHUNKED, 'hello, world'],
      ['GET', 'HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil close', 'until close'],
      ['HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n', ''],
      ['GET', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n', ''],
      ['GET', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 'ok'],
      ['GET', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', ''],
    ];
    for (const [method, response, body] of cases) {
      const whole = readAll(method, Buffer.from(response, 'latin1'), response.length);
      const bytewise = readAll(method, Buffer.from(response, 'latin1'), 1);
      assert.equal(whole.body, body, response);
      assert.equal(bytewise.body, body, response);
      const heads = [whole, bytewise].map((r) => r.reads.filter((read) => read.head).map((read) => read.head?.status));
      assert.deepEqual(heads[0], heads[1]);
      assert.equal(heads[0]?.length, 1, `one final head: ${response}`);
      if (!response.startsWith('HTTP/1.0')) assert.equal(whole.done && bytewise.done, true, response);
    }
  });

  it('keeps header names and values as received, without the trailers', () => {
    const { reads } = readAll('GET', Buffer.from(CHUNKED, 'latin1'), 7);
    const head = reads.find((r) => r.head)?.head;
    assert.deepEqual(head, { status: 200, reason: 'OK', rawHeaders: ['Transfer-Encoding', 'chunked', 'X-A', '1'] });
  });

  it('refuses what a lenient parser might read differently from the client', () => {
    const bad = [
      'HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx', // no reason phrase is fine; this one is valid
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 20 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n',
      'HTTP/1.1 101 Switching Protocols\r\n\r\n',
    ];
    const [valid, ...refused] = bad;
    assert.equal(readAll('GET', Buffer.from(valid ?? ''), 64).body, 'x');
    for (const response of refused)
      assert.throws(() => readAll('GET', Buffer.from(response), 64), ResponseParseError, JSON.stringify(response));
    // Repeating the same length is one length.
    assert.equal(
      readAll('GET', Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok'), 64).body,
      'ok',
    );
    // A head that never ends is refused at the limit, not buffered without end.
    const reader = createResponseReader('GET');
    assert.throws(() => {
      for (let i = 0; i < 100; i++) reader.push(Buffer.from(`X-Filler-${i}: ${'y'.repeat(1000)}\r\n`));
    }, ResponseParseError);
  });

  it('says whether the upstream closed on a complete body', () => {
    const cut = createResponseReader('GET');
    cut.push(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf'));
    assert.equal(cut.end(), false);
    const closeDelimited = createResponseReader('GET');
    closeDelimited.push(Buffer.from('HTTP/1.1 200 OK\r\n\r\nall of it'));
    assert.equal(closeDelimited.end(), true);
  });
});

interface Upstream {
  server: Server;
  port: number;
  /** Upstream connections accepted so far. */
  connections: number;
  /** Request heads received, in order. */
  heads: string[];
  /** Request bodies received (dechunked by the test's own reading: raw as sent). */
  raw: Buffer[];
}

type Respond = (socket: Socket, head: string, raw: Buffer) => void;

/** A raw HTTP upstream: once a request's head (and the body its framing names) arrived, `respond`. */
async function startUpstream(respond: Respond): Promise<Upstream> {
  const upstream: Upstream = { server: createServer(), port: 0, connections: 0, heads: [], raw: [] };
  upstream.server.on('connection', (socket) => {
    upstream.connections++;
    socket.on('error', () => socket.destroy());
    let data = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = data.subarray(0, end).toString('latin1');
      const rest = data.subarray(end + 4);
      const length = /\r\ncontent-length: (\d+)/i.exec(head);
      const complete = length
        ? rest.length >= Number(length[1])
        : /\r\ntransfer-encoding: chunked/i.test(head)
          ? rest.includes('0\r\n\r\n')
          : true;
      if (!complete) return;
      socket.off('data', onData);
      upstream.heads.push(head);
      upstream.raw.push(rest);
      respond(socket, head, rest);
    };
    socket.on('data', onData);
  });
  upstream.port = await listen(upstream.server);
  return upstream;
}

/** Writes `bytes` in pieces of random size, then ends (or not). */
function writeInPieces(socket: Socket, bytes: Buffer, end = true): void {
  let at = 0;
  const next = (): void => {
    while (at < bytes.length) {
      const size = 1 + Math.floor(Math.random() * 100_000);
      const piece = bytes.subarray(at, at + size);
      at += piece.length;
      if (!socket.write(piece)) return void socket.once('drain', next);
    }
    if (end) socket.end();
  };
  next();
}

function chunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length;) {
    const size = 1 + Math.floor(Math.random() * 70_000);
    const piece = body.subarray(at, at + size);
    at += piece.length;
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

interface Got {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The client-side socket, to tell whether the next request reused it. */
  socket: Socket;
}

/** One request through the gateway as a forward proxy (absolute URL, proxy token). */
function viaGateway(
  gw: TestGateway,
  url: string,
  options: { method?: string; body?: Buffer; chunked?: boolean; agent?: Agent } = {},
): Promise<Got> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const headers: Record<string, string> = {
      host: target.host,
      'proxy-authorization': `Basic ${Buffer.from(`agentcell:${gw.token}`).toString('base64')}`,
    };
    if (options.body && !options.chunked) headers['content-length'] = String(options.body.length);
    const req = request({
      host: '127.0.0.1',
      port: gw.port,
      method: options.method ?? 'GET',
      path: url,
      headers,
      agent: options.agent ?? false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
      res.on('end', () =>
        res.complete
          ? resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(parts),
              socket: req.socket!,
            })
          : reject(new Error('response incomplete')),
      );
    });
    // A body written before end() goes chunked; one given to end() alone gets a length.
    if (options.body && options.chunked) req.write(options.body);
    req.end(options.body && !options.chunked ? options.body : undefined);
  });
}

const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

describe('egress gateway: plain-HTTP forwarding', () => {
  let dir: string;
  const gateways: TestGateway[] = [];
  const upstreams: Upstream[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentcell-forward-'));
  });
  after(async () => {
    for (const gw of gateways) await gw.gateway.close();
    for (const upstream of upstreams) upstream.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function setup(respond: Respond): Promise<{ gw: TestGateway; upstream: Upstream; url: string }> {
    const upstream = await startUpstream(respond);
    upstreams.push(upstream);
    const gw = await startTestGateway(dir, { rules: { allow: [`127.0.0.1:${upstream.port}`] } });
    gateways.push(gw);
    return { gw, upstream, url: `http://127.0.0.1:${upstream.port}/file` };
  }

  it('passes a body framed by length, by chunks or by the close byte for byte, and logs its size', async () => {
    const body = randomBytes(6 * 1024 * 1024 + 123);
    for (const framing of ['length', 'chunked', 'close'] as const) {
      const { gw, url } = await setup((socket) => {
        const head =
          framing === 'length'
            ? `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: keep-alive\r\n\r\n`
            : framing === 'chunked'
              ? 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
              : 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n';
        writeInPieces(socket, Buffer.concat([Buffer.from(head), framing === 'chunked' ? chunk(body) : body]));
      });
      const got = await viaGateway(gw, url);
      assert.equal(got.status, 200, framing);
      assert.equal(got.body.length, body.length, framing);
      assert.equal(sha(got.body), sha(body), framing);
      if (framing === 'length') assert.equal(got.headers['content-length'], String(body.length));
      else assert.equal(got.headers['transfer-encoding'], 'chunked', `${framing}: framed anew for the client`);
      await gw.gateway.close();
      const event = gw.events.find((e) => e.kind === 'http' && e.decision === 'allow');
      assert.ok(event && event.kind === 'http' && (event.bytesDown ?? 0) >= body.length, framing);
    }
  });

  it("keeps the client's connection for the next request; each upstream connection serves one", async () => {
    const { gw, upstream, url } = await setup((socket, head) => {
      const body = head.startsWith('HEAD') ? '' : 'second body';
      socket.end(`HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Seen: ${head.split(' ')[0]}\r\n\r\n${body}`);
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await viaGateway(gw, url, { method: 'HEAD', agent });
      assert.equal(first.headers['content-length'], '11', 'a HEAD response keeps the length it names');
      assert.equal(first.body.length, 0);
      const second = await viaGateway(gw, url, { agent });
      assert.equal(second.body.toString(), 'second body');
      assert.equal(second.socket, first.socket, 'one client connection for both');
      assert.equal(upstream.connections, 2);
      for (const head of upstream.heads) {
        assert.match(head, /\r\nConnection: close(\r\n|$)/);
        assert.doesNotMatch(head, /proxy-authorization/i);
      }
    } finally {
      agent.destroy();
    }
  });

  it("sends the client's body, by length or chunked again, intact", async () => {
    const { gw, upstream, url } = await setup((socket) => socket.end('HTTP/1.1 204 No Content\r\n\r\n'));
    const body = randomBytes(300_000);
    assert.equal((await viaGateway(gw, url, { method: 'POST', body })).status, 204);
    assert.equal((await viaGateway(gw, url, { method: 'PUT', body, chunked: true })).status, 204);
    assert.match(upstream.heads[0] ?? '', new RegExp(`\\r\\ncontent-length: ${body.length}`, 'i'));
    assert.equal(sha(upstream.raw[0] ?? Buffer.alloc(0)), sha(body));
    assert.match(upstream.heads[1] ?? '', /\r\nTransfer-Encoding: chunked/);
    const dechunked = readAll(
      'GET',
      Buffer.concat([
        Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'),
        upstream.raw[1] ?? Buffer.alloc(0),
      ]),
      1 << 20,
    );
    assert.equal(sha(Buffer.from(dechunked.body, 'latin1')), sha(body));
  });

  it('answers 502 to a malformed response, and cuts a response the upstream cut short', async () => {
    const malformed = await setup((socket) =>
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx'),
    );
    const refused = await viaGateway(malformed.gw, malformed.url);
    assert.equal(refused.status, 502);
    assert.match(refused.body.toString(), /agentcell: upstream 127\.0\.0\.1:\d+ failed/);

    const cut = await setup((socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly this'));
    await assert.rejects(viaGateway(cut.gw, cut.url), /aborted|incomplete|socket hang up|ECONNRESET/);
    // The gateway still serves the next request.
    const again = await viaGateway(malformed.gw, malformed.url);
    assert.equal(again.status, 502);
  });
});
