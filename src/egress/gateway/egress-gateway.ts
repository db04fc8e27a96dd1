import { rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContext } from 'node:tls';
import { AgentcellError } from '../../errors.js';
import type { EgressCounters, EgressEvent } from '../log/egress-log.js';
import { handleConnect, proxyAuthorizationOf } from '../protocols/connect.js';
import { handleForward } from '../protocols/forward.js';
import type { LlmRequestStart } from '../protocols/inspect/inspect-context.js';
import { handleSocks5 } from '../protocols/socks5.js';
import { SOCKS_VERSION } from '../protocols/socks5-messages.js';
import type { HostRules } from '../rules/host-rules.js';
import type { InspectRules, ProxySecret } from '../rules/inspect-rules.js';
import { withPooledReads } from '../stream/pooled-accept.js';
import { createPooledReads } from '../stream/pooled-reads.js';
import { readFrame } from '../stream/read-frame.js';
import { createGatewayContext, type WarmUpOptions } from './gateway-context.js';
import type { LookupFunction } from './open-destination.js';
import type { UpstreamAnchors } from './upstream-trust.js';
import { bindGatewaySocket, type GatewaySocket } from './gateway-socket.js';

/** Everything the gateway enforces from `[network]`: host rules plus inspection and L7 rules. */
export type GatewayRules = HostRules & InspectRules;

/** What TLS inspection needs; without it, rules that inspect anything are refused. */
export interface GatewayInspectOptions {
  /** Leaf certificates signed by the cell CA (see cell-ca.ts `createLeafMinter`). */
  leaves: {
    secureContext(host: string): Promise<SecureContext>;
    /** Gets ready for the first connection (called by the gateway's warm-up). */
    warmUp?(): void;
  };
  /** PEM CAs an inspected upstream must chain to: system CAs plus `upstream_ca`. */
  upstreamCa: readonly string[];
  /** The CAs earlier runs' upstreams chained to, tried first (upstream-trust.ts); without it, every CA at once. */
  upstreamAnchors?: UpstreamAnchors;
  /** `inject = "proxy"` secrets, values read on the host; their hosts are inspected. */
  secrets?: readonly ProxySecret[];
  /** The run's spy log (LLM API calls through inspected hosts, JSONL, 0600). */
  spyLogPath?: string;
  /** Called as each LLM API request starts (a turn boundary); the request goes upstream at once, its answer reaches the cell once this resolves. */
  onLlmRequest?: (start: LlmRequestStart) => Promise<void>;
}

export interface EgressGatewayOptions {
  /** allow, deny, resolve, inspect and rule, as in `[network]`; compiled now (POLICY_INVALID if bad). */
  rules: GatewayRules;
  /** TLS inspection (cell CA leaves, upstream trust, proxy secrets, spy log). */
  inspect?: GatewayInspectOptions;
  /** The per-run token: clients authenticate as `agentcell:TOKEN` (HTTP Basic or SOCKS5). */
  token: string;
  /** The unix socket to listen on (mounted into the cell); made with `socketMode`. */
  socketPath?: string;
  /** That socket, already listening (bindGatewaySocket): taken at `listen`, with the connections it holds. */
  socket?: GatewaySocket;
  /** Default 0o600. Keep the socket in a private directory: the mode is set just after bind. */
  socketMode?: number;
  /** Also listen on loopback TCP (tests, benchmarks); never any other address. */
  tcp?: { host?: '127.0.0.1' | '::1'; port?: number };
  /** The run's egress log (JSONL, appended, 0600). */
  logPath?: string;
  cell?: string;
  run?: string;
  /** Name resolution for names without a `resolve` override; default getaddrinfo. */
  lookup?: LookupFunction;
  /** Upstream TCP connect timeout per address; default 10 s. */
  connectTimeoutMs?: number;
  /** Time a client has to finish its proxy handshake; default 30 s. */
  handshakeTimeoutMs?: number;
  /** Every event, as it is logged (for a live view); a throw here fails the gateway closed. */
  onEvent?: (event: EgressEvent) => void;
  /** The gateway hit an error it can't serve through (log unwritable, listener failed) and closed itself. */
  onError?: (error: Error) => void;
}

export interface EgressGatewayAddress {
  socketPath?: string;
  tcp?: { host: string; port: number };
}

export interface EgressGateway {
  /** Starts listening; resolves with where. Rejects (and listens nowhere) on any failure. */
  listen(): Promise<EgressGatewayAddress>;
  /**
   * Replaces the rules for everything decided from now on, atomically; open tunnels
   * and forward requests the new rules would refuse are closed (`revoked`), and so are
   * spliced tunnels to hosts that are now inspected. `inspect` and `rule`, when left
   * out, keep their current value (allow/deny/resolve are always replaced). Throws
   * POLICY_INVALID and keeps the old rules when the new ones don't compile.
   */
  reload(rules: GatewayRules): { revoked: number };
  /**
   * Serves connections accepted on `listener` too, a listening socket made elsewhere (a
   * cell's loopback: see RunControl.adoptListener), exactly as its own: same token, same
   * rules; closed with the gateway. False (nothing taken) when the gateway is not listening.
   */
  adopt(listener: Server): boolean;
  /** Decisions logged so far (allowed tunnels count when they close). */
  counters(): EgressCounters;
  /**
   * Starts the work the first inspected connection would otherwise wait on: loading the
   * leaf minter and minting the leaves of the names known now (one 20–80 ms stretch of
   * the event loop), then building the upstream trust store a step (~2–6 ms of OpenSSL's
   * parsing) per turn of the event loop. Now, or (`afterRefusing`) once the gateway has
   * refused that host: a run whose canaries probe the gateway begins it at their refused
   * probe, the last thing the cell does before its command, so neither the bridge's
   * handoff nor the probe waits behind it. Nothing without inspection.
   */
  warmUp(options?: WarmUpOptions): void;
  /** Stops listening, ends every connection, flushes the log, removes the socket. */
  close(): Promise<void>;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1']);
const EMPTY = Buffer.alloc(0);

/**
 * The egress gateway: one listener (unix socket, optionally loopback TCP) speaking
 * HTTP CONNECT, HTTP forward proxying and SOCKS5, told apart by the first byte; each
 * protocol is a handler in protocols/ over the state in gateway-context.ts. It
 * denies by default, needs the run's token, checks rules before DNS and addresses
 * after it, connects to the checked address, checks SNI against the target, logs
 * every decision, and fails closed: any error ends the connection, and an error it
 * can't serve through (log unwritable, listener broken) closes the whole gateway.
 * Each instance owns all its state.
 */
export function createEgressGateway(options: EgressGatewayOptions): EgressGateway {
  if (options.token.length === 0) throw new AgentcellError('USAGE', 'the egress gateway needs a per-run token');
  let state: 'new' | 'starting' | 'listening' | 'closing' = 'new';
  const gateway = createGatewayContext(options, {
    listening: () => state === 'listening',
    closing: () => state === 'closing',
    failClosed,
  });
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 30_000;
  const clients = new Set<Socket>();
  const pending = new Set<Promise<void>>();
  const servers: Server[] = [];
  let closing: Promise<void> | undefined;
  let unixSocket: GatewaySocket | undefined;

  // Never listens itself: accept() hands it the connections that speak HTTP.
  // Its own header/request timers only run on a listening server: the socket's idle
  // timeout (handshakeTimeoutMs) is what bounds a silent client.
  const http = createHttpServer();
  http.on('request', (req: IncomingMessage, res: ServerResponse) => track(handleForward(gateway, req, res)));
  http.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    track(handleConnect(gateway, req, socket as Socket, head)),
  );
  http.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    const reason = gateway.authFailure(proxyAuthorizationOf(req)) ?? 'unsupported';
    gateway.refuseRaw(
      'http',
      socket as Socket,
      { host: '', port: 0, reason, rule: null, detail: 'HTTP upgrade' },
      Date.now(),
    );
  });
  http.on('clientError', (error: Error & { code?: string }, socket: Duplex) => {
    if (error.code?.startsWith('HPE_') && socket.writable)
      gateway.refuseRaw('http', socket as Socket, { host: '', port: 0, reason: 'bad-request', rule: null }, Date.now());
    else socket.destroy();
  });

  function track(work: Promise<void>): void {
    const settled = work.catch(() => undefined);
    pending.add(settled);
    void settled.then(() => pending.delete(settled));
  }

  /** The listeners pause new connections, so that they can be re-wrapped to read into pooled buffers. */
  function acceptPaused(accepted: Socket): void {
    const reads = createPooledReads();
    const socket = withPooledReads(accepted, reads);
    if (socket) gateway.clientReads.set(socket, reads);
    accept(socket ?? accepted);
  }

  function accept(socket: Socket): void {
    if (state !== 'listening') {
      socket.destroy();
      return;
    }
    clients.add(socket);
    socket.once('close', () => clients.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setNoDelay(true);
    socket.setTimeout(handshakeTimeoutMs, () => socket.destroy());
    const firstByte = (data: Buffer) => (data.length > 0 ? { value: data[0], used: 0 } : ('more' as const));
    track(
      readFrame(socket, EMPTY, firstByte).then(
        ({ value, rest }) => {
          if (value === SOCKS_VERSION) return handleSocks5(gateway, socket, rest);
          socket.unshift(rest);
          http.emit('connection', socket);
          socket.resume();
        },
        () => {
          socket.destroy();
        },
      ),
    );
  }

  function failClosed(error: Error): void {
    if (state === 'closing') return;
    void close();
    options.onError?.(error);
  }

  /** The unix socket, closed with the gateway; it serves once the gateway listens. */
  function adoptSocket(bound: GatewaySocket): void {
    unixSocket = bound;
    servers.push(bound.server);
    bound.server.on('error', failClosed);
  }

  async function listenOn(server: Server, where: { path: string } | { host: string; port: number }): Promise<void> {
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(where, () => {
        server.off('error', reject);
        server.on('error', failClosed);
        resolve();
      });
    });
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      state = 'closing';
      const stopped = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
      unixSocket?.close(); // what it held, if it never served
      for (const socket of clients) socket.destroy();
      gateway.destroyUpstreams();
      await Promise.race([Promise.all([...pending]), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      await Promise.all(stopped);
      await gateway.closeLogs();
      if (options.socketPath !== undefined) rmSync(options.socketPath, { force: true });
    })();
    return closing;
  }

  return {
    async listen() {
      if (state !== 'new') throw new AgentcellError('USAGE', 'an egress gateway listens once');
      if (options.socketPath === undefined && options.tcp === undefined)
        throw new AgentcellError('USAGE', 'the egress gateway needs a socketPath or a loopback tcp listener');
      const tcpHost = options.tcp?.host ?? '127.0.0.1';
      if (!LOOPBACK_HOSTS.has(tcpHost))
        throw new AgentcellError('USAGE', `the egress gateway listens on loopback only, not ${tcpHost}`);
      state = 'starting';
      const address: EgressGatewayAddress = {};
      try {
        if (options.socket !== undefined) adoptSocket(options.socket);
        await gateway.openLogs();
        if (unixSocket === undefined && options.socketPath !== undefined)
          adoptSocket(await bindGatewaySocket(options.socketPath, options.socketMode));
        if (options.socketPath !== undefined) address.socketPath = options.socketPath;
        if (options.tcp !== undefined) {
          const server = createNetServer({ allowHalfOpen: true, pauseOnConnect: true }, acceptPaused);
          await listenOn(server, { host: tcpHost, port: options.tcp.port ?? 0 });
          const bound = server.address();
          address.tcp = { host: tcpHost, port: typeof bound === 'object' && bound ? bound.port : 0 };
        }
      } catch (error) {
        await close();
        throw error;
      }
      if ((state as string) === 'closing')
        throw new AgentcellError('INTERNAL', 'the egress gateway failed while starting');
      state = 'listening';
      unixSocket?.take(acceptPaused);
      return address;
    },
    reload: (rules) => gateway.reload(rules),
    adopt(listener) {
      if (state !== 'listening') return false;
      // A server of the gateway's own takes the descriptor over (net.Server#listen(handle)):
      // its options, not those the listener was made with, decide how connections are read.
      const server = createNetServer({ allowHalfOpen: true, pauseOnConnect: true }, acceptPaused);
      servers.push(server);
      server.on('error', failClosed);
      server.listen(listener);
      return true;
    },
    counters: () => gateway.counters(),
    warmUp: (when) => gateway.warmUp(when),
    close,
  };
}
