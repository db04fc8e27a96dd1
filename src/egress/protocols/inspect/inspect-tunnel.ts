import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ipFamily } from '../../../_internal/ip-family.js';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, TLSSocket, type SecureContext } from 'node:tls';
import type { EgressReason } from '../../log/egress-log.js';
import { withPrefix } from '../../stream/prefixed-stream.js';
import { FrameError } from '../../stream/read-frame.js';
import { socketClosed } from '../../stream/socket-closed.js';
import { readFirstBytes, sniRefusal, type FirstBytes } from '../classify-first-bytes.js';
import { endRefused, rawDenyResponse, TLS_ACCESS_DENIED } from '../deny-response.js';
import { startTunnel, type TunnelHooks, type TunnelTarget } from '../splice-tunnel.js';
import type { InspectContext } from './inspect-context.js';
import { inspectedRequests } from './inspect-request.js';
import { UpstreamAgent } from './upstream-agent.js';

/** A client that doesn't finish its TLS handshake with the gateway in this time is dropped. */
const HANDSHAKE_TIMEOUT_MS = 30_000;

/** Upstream handshake errors of a certificate chain that did not verify. */
const untrustedChains = new WeakSet<Error>();

/**
 * Terminates the client's TLS with a leaf minted for the target (its ClientHello must
 * name the target, as for any tunnel), then serves HTTP/1.1 on it (inspect-request.ts
 * checks each request). Upstream connections are TLS to the checked address: the
 * CONNECT's own first, later ones through the rules again (`context.reopen`). Resolves
 * when everything is closed and `hooks.closed` has been told (the tunnel's own event).
 */
export function inspectTunnel(
  client: Socket,
  upstream: Socket,
  initial: Buffer,
  target: TunnelTarget,
  hooks: TunnelHooks,
  context: InspectContext,
): Promise<void> {
  const raws = new Set<Socket>();
  /** Per upstream connection, settled once its bytes are counted (`closed` is true a tick before 'close'). */
  const counted: Promise<void>[] = [];
  let bytesUp = 0;
  let bytesDown = 0;
  let spare: Socket | undefined = upstream;
  let tls: TLSSocket | undefined;
  const agent = new UpstreamAgent(() => openUpstream());
  const destroyAll = (): void => {
    client.destroy();
    tls?.destroy();
    spare?.destroy();
    agent.destroy();
    for (const raw of raws) raw.destroy();
  };
  const state = startTunnel(client, target, hooks, { cleartext: () => false, destroy: destroyAll });
  watch(upstream);

  function watch(raw: Socket): void {
    raws.add(raw);
    raw.on('error', () => raw.destroy());
    counted.push(
      new Promise((resolve) =>
        raw.once('close', () => {
          bytesUp += raw.bytesWritten;
          bytesDown += raw.bytesRead;
          raws.delete(raw);
          resolve();
        }),
      ),
    );
  }

  const done = socketClosed(client).then(async () => {
    destroyAll();
    await Promise.all(counted); // their byte counts land in the tunnel's line
    state.close({ bytesUp, bytesDown });
  });

  async function openUpstream(): Promise<Duplex> {
    const first = context.upstreamTrust();
    let secure: TLSSocket;
    try {
      secure = await handshake(first.context);
    } catch (error) {
      // The CAs earlier runs' upstreams chained to don't verify this one: every CA may (and decides).
      if (!first.partial || !untrustedChains.has(error as Error)) throw error;
      secure = await handshake(context.fullUpstreamTrust());
      context.verifiedUpstream(secure);
      return secure;
    }
    if (!first.partial) context.verifiedUpstream(secure);
    return secure;
  }

  /** TLS to the target, verified against `trust`, over the CONNECT's own connection or a new checked one. */
  async function handshake(trust: SecureContext): Promise<TLSSocket> {
    let raw = spare;
    spare = undefined;
    if (!raw || raw.destroyed) {
      raw = await context.reopen();
      watch(raw);
    }
    const name = ipFamily(target.host) === 0 ? target.host : undefined;
    const secure = tlsConnect({
      socket: raw,
      ...(name !== undefined ? { servername: name } : {}),
      host: target.host,
      secureContext: trust,
      ALPNProtocols: ['http/1.1'],
    });
    const upstreamRaw = raw;
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => {
        secure.off('error', reject);
        resolve();
      });
      secure.once('error', (error: Error) => {
        upstreamRaw.destroy();
        if (chainFailed(secure)) untrustedChains.add(error);
        reject(error);
      });
    });
    secure.on('error', () => secure.destroy());
    return secure;
  }

  /** The gateway's TLS server side over the client, and HTTP/1.1 on it. */
  async function terminate(rest: Buffer): Promise<void> {
    const secureContext = await context.secureContext(target.host);
    if (client.destroyed) return;
    tls = new TLSSocket(withPrefix(client, rest), { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
    tls.on('error', destroyAll);
    tls.once('close', () => client.destroy());
    const handshake = setTimeout(destroyAll, HANDSHAKE_TIMEOUT_MS);
    tls.once('secure', () => clearTimeout(handshake));
    tls.once('close', () => clearTimeout(handshake));
    const requests = inspectedRequests(target, context, agent);
    const server = createServer({ requireHostHeader: false });
    server.keepAliveTimeout = 60_000;
    // Fail closed: a request we can't relay ends the tunnel.
    server.on('request', (req: IncomingMessage, res: ServerResponse) => failClosed(() => requests.request(req, res)));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      failClosed(() => requests.upgrade(req, socket, head)),
    );
    server.on('clientError', (_error: Error, socket: Duplex) => socket.destroy());
    server.emit('connection', tls);
  }

  function failClosed(work: () => void): void {
    try {
      work();
    } catch {
      destroyAll();
    }
  }

  readFirstBytes(client, initial)
    .then(
      async ({ value, rest }) => {
        const refusal = firstBytesRefusal(value, target);
        if (!refusal) return terminate(rest);
        state.outcome = { ...state.outcome, decision: 'deny', reason: refusal, rule: target.rule };
        spare?.destroy();
        const denial = { host: target.host, port: target.port, reason: refusal, rule: target.rule };
        endRefused(client, value.kind === 'http' ? rawDenyResponse(denial) : TLS_ACCESS_DENIED);
      },
      (error: unknown) => {
        if (error instanceof FrameError && error.why !== 'closed')
          state.outcome = { ...state.outcome, decision: 'deny', reason: 'tls-unreadable' };
        destroyAll();
      },
    )
    .catch(destroyAll);

  return done;
}

/** Whether an upstream's certificate chain did not verify (a name it doesn't hold is not the store's doing). */
function chainFailed(secure: TLSSocket): boolean {
  // node keeps the verification error's code here, a string whatever the types say; null when it passed
  const code: unknown = secure.authorizationError;
  return code !== null && code !== undefined && code !== 'ERR_TLS_CERT_ALTNAME_INVALID';
}

/** Only TLS naming the target is inspected; anything else to an inspected host is refused. */
function firstBytesRefusal(first: FirstBytes, target: TunnelTarget): EgressReason | undefined {
  switch (first.kind) {
    case 'tls':
      return sniRefusal(first.sni, target.host);
    case 'tls-unreadable':
      return 'tls-unreadable';
    case 'http':
    case 'other':
    case 'more':
      return 'inspect-needs-tls';
  }
}
