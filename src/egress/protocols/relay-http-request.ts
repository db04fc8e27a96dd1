import { request, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { connectionTokens, HOP_BY_HOP } from './hop-by-hop.js';

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
 * connection is used once. Resolves when the upstream socket has closed.
 */
export function relayHttpRequest(req: IncomingMessage, res: ServerResponse, upstream: Socket, url: URL): Promise<void> {
  const headers: OutgoingHttpHeaders = {};
  const dropped = connectionTokens(req.headers.connection);
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = (req.rawHeaders[i] ?? '').toLowerCase();
    const value = req.rawHeaders[i + 1] ?? '';
    if (HOP_BY_HOP.has(name) || name === 'host' || dropped.has(name)) continue; // host: set below
    const existing = headers[name];
    headers[name] =
      existing === undefined ? value : [...(Array.isArray(existing) ? existing : [String(existing)]), value];
  }
  headers['host'] = url.host;
  headers['connection'] = 'close';

  return new Promise((resolve) => {
    const finish = (): void => resolve();
    if (upstream.closed) finish();
    else upstream.once('close', finish);
    const outgoing = request({
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers,
      setHost: false,
      createConnection: () => upstream,
    });
    outgoing.on('error', () => {
      upstream.destroy();
      if (!res.headersSent) {
        res.writeHead(502, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Agentcell-Denied': 'connect-failed' });
        res.end(`agentcell: upstream ${url.host} failed\n`);
      } else res.destroy();
    });
    outgoing.on('response', (incoming) => {
      const responseHeaders: string[] = [];
      const responseDropped = connectionTokens(incoming.headers.connection);
      for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) {
        const name = incoming.rawHeaders[i] ?? '';
        const lower = name.toLowerCase();
        if (HOP_BY_HOP.has(lower) || responseDropped.has(lower)) continue;
        responseHeaders.push(name, incoming.rawHeaders[i + 1] ?? '');
      }
      res.writeHead(incoming.statusCode ?? 502, incoming.statusMessage, responseHeaders);
      incoming.pipe(res);
      incoming.on('error', () => res.destroy());
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
    req.pipe(outgoing);
  });
}
