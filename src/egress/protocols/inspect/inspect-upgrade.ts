import { request, type Agent, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import { bodyDecoding } from './decode-response.js';
import { connectionTokens, HOP_BY_HOP } from '../hop-by-hop.js';
import { createMaskStream, maskValues } from './redact-stream.js';

/** How a relayed upgrade ended, for its `request` event. */
export type UpgradeResult =
  | { kind: 'upgraded'; status: number; bytesUp: number; bytesDown: number }
  | { kind: 'answered'; status: number; bytesDown: number }
  | { kind: 'failed'; error: NodeJS.ErrnoException };

export interface UpgradeRelay {
  /** The tunnel's upstream agent: the upgrade takes its (new or idle) connection for good. */
  agent: Agent;
  /** The checked request's headers for upstream, secrets already injected. */
  headers: OutgoingHttpHeaders;
  /** The secrets' forms (raw and encoded) masked on the way back to the cell. */
  masked: readonly Buffer[];
}

/** `GET` with `Upgrade: websocket` (RFC 6455 §4.1): the one upgrade an inspected host gets. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return req.method === 'GET' && (req.headers.upgrade ?? '').trim().toLowerCase() === 'websocket';
}

/**
 * Sends a checked WebSocket upgrade request upstream. On `101` the upstream's head goes
 * to the client and both sides are relayed raw until either closes (`done` once, when
 * the first side closes, with the bytes relayed after the head); any other answer is
 * relayed as a close-delimited response; an upstream that fails before answering is
 * `failed`, for the caller to refuse. Secret values are masked in the answer's headers and in
 * everything after it (frame lengths stay valid: a mask keeps the length).
 */
export function relayUpgrade(
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  relay: UpgradeRelay,
  done: (result: UpgradeResult) => void,
): void {
  const headers: OutgoingHttpHeaders = { ...relay.headers, connection: 'Upgrade', upgrade: 'websocket' };
  const outgoing = request({ agent: relay.agent, method: 'GET', path: req.url, headers, setHost: false });
  const secrets = relay.masked;
  let answered = false;
  let abandoned = false;
  const gone = (): void => {
    if (answered) return;
    abandoned = true;
    outgoing.destroy();
  };
  client.once('close', gone);

  outgoing.once('upgrade', (response: IncomingMessage, upstream: Duplex, upstreamHead: Buffer) => {
    answered = true;
    client.off('close', gone);
    // Extensions were not offered where a secret went (compressed frames would hide it): one the upstream imposes is cut.
    if (secrets.length > 0 && response.headers['sec-websocket-extensions'] !== undefined) {
      upstream.destroy();
      client.destroy();
      done({ kind: 'answered', status: 0, bytesDown: 0 });
      return;
    }
    const upgrade = response.headers.upgrade ?? 'websocket';
    client.write(responseHead(response, secrets, ['Connection: Upgrade', `Upgrade: ${upgrade}`]));
    let bytesUp = head.length;
    let bytesDown = upstreamHead.length;
    if (upstreamHead.length > 0) client.write(maskValues(Buffer.from(upstreamHead), secrets));
    if (head.length > 0) upstream.write(head);
    upstream.on('data', (chunk: Buffer) => (bytesDown += chunk.length));
    client.on('data', (chunk: Buffer) => (bytesUp += chunk.length));
    (secrets.length > 0 ? upstream.pipe(createMaskStream(secrets)) : upstream).pipe(client);
    client.pipe(upstream);
    upstream.on('error', () => upstream.destroy());
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      done({ kind: 'upgraded', status: response.statusCode ?? 101, bytesUp, bytesDown });
    };
    // Either side gone ends the other. An upstream that ended cleanly ends the client through
    // the pipe (after the mask stream's held-back tail); one that broke off cuts it.
    let upstreamEnded = false;
    upstream.once('end', () => (upstreamEnded = true));
    upstream.once('close', () => {
      finish();
      if (!upstreamEnded) client.destroy();
    });
    client.once('close', () => {
      finish();
      upstream.destroy();
    });
  });

  outgoing.once('response', (response: IncomingMessage) => {
    answered = true;
    client.off('close', gone);
    // A body the gateway would have to decode to mask is not relayed (the cell asked to upgrade, not to download).
    if (secrets.length > 0 && bodyDecoding(response.headers).kind !== 'plain') {
      response.destroy();
      client.destroy();
      done({ kind: 'answered', status: response.statusCode ?? 0, bytesDown: 0 });
      return;
    }
    let bytesDown = 0;
    client.write(responseHead(response, secrets, ['Connection: close']));
    response.on('data', (chunk: Buffer) => (bytesDown += chunk.length));
    (secrets.length > 0 ? response.pipe(createMaskStream(secrets)) : response).pipe(client);
    response.once('end', () => done({ kind: 'answered', status: response.statusCode ?? 0, bytesDown }));
    response.once('error', () => client.destroy());
  });

  outgoing.once('error', (error: NodeJS.ErrnoException) => {
    if (answered) client.destroy();
    // The client left before the upstream answered: allowed, never answered (status 0), as for a request.
    else if (abandoned) done({ kind: 'answered', status: 0, bytesDown: 0 });
    else done({ kind: 'failed', error });
  });
  outgoing.end();
}

/** The status line and end-to-end headers of `response`, secrets starred, then `extra`. */
function responseHead(response: IncomingMessage, secrets: readonly Buffer[], extra: string[]): Buffer {
  const lines = [`HTTP/1.1 ${response.statusCode ?? 502} ${response.statusMessage ?? ''}`];
  const named = connectionTokens(response.headers.connection);
  for (let i = 0; i + 1 < response.rawHeaders.length; i += 2) {
    const name = response.rawHeaders[i] ?? '';
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower)) continue;
    lines.push(`${name}: ${response.rawHeaders[i + 1] ?? ''}`);
  }
  return maskValues(Buffer.from(`${[...lines, ...extra].join('\r\n')}\r\n\r\n`, 'latin1'), secrets);
}
