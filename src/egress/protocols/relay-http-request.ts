import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { connectionTokens, HOP_BY_HOP } from './hop-by-hop.js';
import type { PooledReads } from '../stream/pooled-reads.js';
import { createResponseReader, type BodyFraming, type ResponseHead } from './http1-response.js';
import { PROMOTE_AFTER, startKernelRelay, type KernelRelay } from '../stream/kernel-relay.js';
import { socketFlushed } from '../stream/socket-flushed.js';

/** The target of an absolute-form request (`GET http://host:port/path`), or a reason it is not one. */
export function parseForwardUrl(raw: string | undefined): { url: URL } | { problem: 'bad-request' | 'unsupported' } {
  if (raw === undefined || !/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) return { problem: 'bad-request' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { problem: 'bad-request' };
  }
  return url.protocol === 'http:' ? { url } : { problem: 'unsupported' };
}

/** The URL's host without IPv6 brackets, and its port (80 by default). */
export function forwardTarget(url: URL): { host: string; port: number } {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port: url.port === '' ? 80 : Number(url.port) };
}

/**
 * Sends one forward-proxy request over an already connected (and checked) upstream
 * socket and relays the response. Host comes from the URL (RFC 9112 §3.2.2: a proxy
 * replaces it), the proxy token and hop-by-hop headers are dropped, the upstream
 * connection is used once. The response's body goes from the upstream's pooled reads
 * (`reads`, bound to `upstream`) to the client as they are (http1-response.ts), framed for
 * the client by node's server (so the client's connection can stay open). A Content-Length
 * body with PROMOTE_AFTER bytes or more still to come goes on through the kernel relay
 * (kernel-relay.ts), which writes exactly those bytes to the client's socket. Resolves when
 * the upstream socket has closed (and the kernel relay, if any, has finished), with the
 * bytes the kernel relay moved.
 */
export function relayHttpRequest(
  req: IncomingMessage,
  res: ServerResponse,
  upstream: Socket,
  reads: PooledReads,
  url: URL,
): Promise<number> {
  const method = req.method ?? 'GET';
  const dropped = connectionTokens(req.headers.connection);
  const lines = [`${method} ${url.pathname}${url.search} HTTP/1.1`];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] ?? '';
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || lower === 'host' || dropped.has(lower)) continue; // host: set below
    lines.push(`${name}: ${req.rawHeaders[i + 1] ?? ''}`);
  }
  // Node's server took the client's chunked framing off the body: it is framed anew.
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (chunked) lines.push('Transfer-Encoding: chunked');
  lines.push(`Host: ${url.host}`, 'Connection: close', '', '');

  let kernel: KernelRelay | undefined;
  /** The body is (being) handed to the kernel relay: node reads no more of it. */
  let handing = false;
  return new Promise((resolve) => {
    const closed = (): void => {
      kernel?.stop();
      void (kernel?.finished ?? Promise.resolve(undefined)).then((result) => resolve(result?.taken ? result.down : 0));
    };
    if (upstream.closed) closed();
    else upstream.once('close', closed);
    const fail = (): void => {
      upstream.destroy();
      if (res.writableEnded) return;
      if (!res.headersSent) {
        res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Agentcell-Denied': 'connect-failed' });
        res.end(`agentcell: upstream ${url.host} failed\n`);
      } else res.destroy();
    };
    upstream.on('error', fail);
    upstream.write(lines.join('\r\n'));
    sendBody(req, upstream, chunked);

    const reader = createResponseReader(method);
    const resume = (): void => {
      if (!handing) upstream.resume();
    };
    /** Node's relay goes on where the kernel relay could not take over. */
    const relayOn = (): void => {
      handing = false;
      if (res.writableNeedDrain) res.once('drain', resume);
      else upstream.resume();
    };
    const handOver = async (left: number): Promise<void> => {
      handing = true;
      const socket = res.socket;
      if (socket === null || socket.destroyed) return relayOn();
      if (!res.headersSent) res.flushHeaders();
      await socketFlushed(socket); // the head and the body so far
      // Bytes still held by the response (a pipelined response ahead of it is being written): stay in node.
      const ready = res.writableLength === 0 && !socket.destroyed && !upstream.destroyed;
      const relay = ready ? startKernelRelay(socket, upstream, left) : undefined;
      if (!relay) return relayOn();
      kernel = relay;
      const result = await relay.finished;
      // spawn stopped node's reads of the sockets it passed: the server reads the client's next request again.
      if (!socket.destroyed) socket.resume();
      if (!result.taken) {
        kernel = undefined;
        return relayOn();
      }
      upstream.destroy();
      // Cut short (the upstream ended or failed, or a reload revoked it): the client must not take it for complete.
      if (result.down === left) res.end();
      else res.destroy();
    };
    reads.consume((chunk, release) => {
      let read;
      try {
        read = reader.push(chunk);
        if (read.head && read.framing)
          res.writeHead(read.head.status, read.head.reason, clientHeaders(read.head, read.framing));
      } catch {
        // A malformed response, or a status line or header node's server refuses to send.
        release();
        fail();
        return false;
      }
      // The read's buffer is reused once the last write holding a view of it has gone out.
      let writable = true;
      const last = read.body.length - 1;
      read.body.forEach((part, i) => (writable = res.write(part, i === last ? release : undefined) && writable));
      if (last === -1) release();
      if (read.done) {
        res.end();
        upstream.destroy();
        return false;
      }
      const left = reader.lengthLeft();
      if (left !== undefined && left >= PROMOTE_AFTER && !handing) {
        void handOver(left);
        return false;
      }
      if (!writable) res.once('drain', resume);
      return writable;
    });
    upstream.resume();
    upstream.on('end', () => {
      if (!reader.end()) return fail(); // cut short: the client must not take it for complete
      if (!res.writableEnded) res.end();
      upstream.destroy();
    });
    // The client gave up (possibly while the upstream was being connected): so do we.
    const clientGone = (): void => {
      if (!res.writableFinished) upstream.destroy();
    };
    if (res.closed) clientGone();
    res.on('close', clientGone);
    req.on('close', () => {
      if (!req.complete) upstream.destroy();
    });
  });
}

/** The client's body to the upstream, chunked again if it came chunked, with the upstream's back-pressure. */
function sendBody(req: IncomingMessage, upstream: Socket, chunked: boolean): void {
  req.on('data', (chunk: Buffer) => {
    if (upstream.destroyed) return;
    let writable: boolean;
    if (chunked) {
      if (chunk.length === 0) return;
      upstream.cork();
      upstream.write(`${chunk.length.toString(16)}\r\n`);
      upstream.write(chunk);
      writable = upstream.write('\r\n');
      upstream.uncork();
    } else writable = upstream.write(chunk);
    if (!writable) {
      req.pause();
      upstream.once('drain', () => req.resume());
    }
  });
  req.on('end', () => {
    if (chunked && !upstream.destroyed) upstream.write('0\r\n\r\n');
  });
}

/** The response's headers for the client: no hop-by-hop ones; a length node's server frames by, or none. */
function clientHeaders(head: ResponseHead, framing: BodyFraming): string[] {
  const headers: string[] = [];
  const dropped = connectionTokens(
    head.rawHeaders.filter((_, i) => i % 2 === 1 && head.rawHeaders[i - 1]?.toLowerCase() === 'connection'),
  );
  for (let i = 0; i + 1 < head.rawHeaders.length; i += 2) {
    const name = head.rawHeaders[i] ?? '';
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || dropped.has(lower)) continue;
    // A response without a body (HEAD, 304) keeps the length it names; one with a body gets its own.
    if (lower === 'content-length' && framing.kind !== 'none') continue;
    headers.push(name, head.rawHeaders[i + 1] ?? '');
  }
  if (framing.kind === 'length') headers.push('Content-Length', String(framing.length));
  return headers;
}
