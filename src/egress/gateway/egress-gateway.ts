import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, type SecureContext } from 'node:tls';
import { AgentcellError } from '../../errors.js';
import { splitHostPort } from '../../policy/host-pattern.js';
import { guardAddress } from '../rules/address-guard.js';
import { denyResponse, rawDenyResponse, type Denial } from '../protocols/deny-response.js';
import {
  createEgressLog,
  type EgressCounters,
  type EgressEvent,
  type EgressKind,
  type EgressReason,
} from '../log/egress-log.js';
import { compileHostRules, normalizeHost, type HostMatcher, type HostRules } from '../rules/host-rules.js';
import {
  compileInspectRules,
  type InspectMatcher,
  type InspectRules,
  type ProxySecret,
} from '../rules/inspect-rules.js';
import { inspectTunnel, type InspectContext } from '../protocols/inspect/inspect-tunnel.js';
import { createSpyLog, redactSecrets, type SpyLog } from '../log/spy-log.js';
import {
  openDestination,
  systemLookup,
  type DestinationRequest,
  type DestinationResult,
  type LookupFunction,
} from './open-destination.js';
import { checkCredentials, checkProxyAuthorization } from './proxy-auth.js';
import { FrameError, readFrame } from '../stream/read-frame.js';
import { forwardTarget, parseForwardUrl, relayHttpRequest } from '../protocols/relay-http-request.js';
import {
  COMMAND_CONNECT,
  METHOD_NONE_ACCEPTABLE,
  METHOD_USER_PASSWORD,
  parseGreeting,
  parseRequest,
  parseUserPassword,
  SOCKS_VERSION,
  socksReply,
  type SocksReplyCode,
} from '../protocols/socks5-messages.js';
import { withPooledReads } from '../stream/pooled-accept.js';
import { createPooledReads, type PooledReads } from '../stream/pooled-reads.js';
import { spliceTunnel, type OpenTunnel, type TunnelHooks, type TunnelTarget } from '../protocols/splice-tunnel.js';

/** Everything the gateway enforces from `[network]`: host rules plus inspection and L7 rules. */
export type GatewayRules = HostRules & InspectRules;

/** What TLS inspection needs; without it, rules that inspect anything are refused. */
export interface GatewayInspectOptions {
  /** Leaf certificates signed by the cell CA (see cell-ca.ts `createLeafMinter`). */
  leaves: { secureContext(host: string): Promise<SecureContext> };
  /** PEM CAs an inspected upstream must chain to: system CAs plus `upstream_ca`. */
  upstreamCa: readonly string[];
  /** `inject = "proxy"` secrets, values read on the host; their hosts are inspected. */
  secrets?: readonly ProxySecret[];
  /** The run's spy log (LLM API calls through inspected hosts, JSONL, 0600). */
  spyLogPath?: string;
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
  /** Decisions logged so far (allowed tunnels count when they close). */
  counters(): EgressCounters;
  /** Stops listening, ends every connection, flushes the log, removes the socket. */
  close(): Promise<void>;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1']);
const CONNECT_ESTABLISHED = 'HTTP/1.1 200 Connection established\r\n\r\n';
const EMPTY = Buffer.alloc(0);

/** A connection's decision, before the gateway stamps it with time, cell, run and kind. */
type Outcome = Pick<EgressEvent, 'host' | 'port' | 'address' | 'decision' | 'rule' | 'reason'> &
  Partial<Pick<EgressEvent, 'bytesUp' | 'bytesDown' | 'method' | 'path' | 'status' | 'injected'>> & {
    revoked?: boolean;
    inspected?: boolean;
  };

/**
 * The egress gateway: one listener (unix socket, optionally loopback TCP) speaking
 * HTTP CONNECT, HTTP forward proxying and SOCKS5, told apart by the first byte. It
 * denies by default, needs the run's token, checks rules before DNS and addresses
 * after it, connects to the checked address, checks SNI against the target, logs
 * every decision, and fails closed: any error ends the connection, and an error it
 * can't serve through (log unwritable, listener broken) closes the whole gateway.
 * Each instance owns all its state.
 */
export function createEgressGateway(options: EgressGatewayOptions): EgressGateway {
  if (options.token.length === 0) throw new AgentcellError('USAGE', 'the egress gateway needs a per-run token');
  let matcher: HostMatcher = compileHostRules(options.rules);
  const secrets = options.inspect?.secrets ?? [];
  let inspectRules: InspectRules = { inspect: options.rules.inspect ?? [], rule: options.rules.rule ?? [] };
  let inspection: InspectMatcher = compileInspection(inspectRules, options.inspect);
  const redactions = secrets.flatMap((s) => [
    { name: s.name, value: s.headerValue },
    { name: s.name, value: s.value },
  ]);
  const spy: SpyLog | undefined =
    options.inspect?.spyLogPath === undefined
      ? undefined
      : createSpyLog({
          path: options.inspect.spyLogPath,
          cell: options.cell ?? '',
          run: options.run ?? '',
          secrets: redactions,
        });
  const lookup = options.lookup ?? systemLookup;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 30_000;
  const log = createEgressLog({ path: options.logPath, onEvent: options.onEvent, onError: failClosed });
  const clients = new Set<Socket>();
  const upstreams = new Set<Socket>();
  const tunnels = new Set<OpenTunnel>();
  /** Accepted sockets that read into pooled buffers (all of them, unless node no longer allows it). */
  const clientReads = new WeakMap<Socket, PooledReads>();
  const inspectedTunnels = new WeakSet<OpenTunnel>();
  let upstreamTrust: SecureContext | undefined;
  const pending = new Set<Promise<void>>();
  const servers: Server[] = [];
  let state: 'new' | 'starting' | 'listening' | 'closing' = 'new';
  let closing: Promise<void> | undefined;

  // Never listens itself: accept() hands it the connections that speak HTTP.
  // Its own header/request timers only run on a listening server: the socket's idle
  // timeout (handshakeTimeoutMs) is what bounds a silent client.
  const http = createHttpServer();
  http.on('request', (req: IncomingMessage, res: ServerResponse) => track(handleForward(req, res)));
  http.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    track(handleConnect(req, socket as Socket, head)),
  );
  http.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    const started = Date.now();
    const reason = authFailure(req) ?? 'unsupported';
    refuseRaw('http', socket as Socket, { host: '', port: 0, reason, rule: null, detail: 'HTTP upgrade' }, started);
  });
  http.on('clientError', (error: Error & { code?: string }, socket: Duplex) => {
    if (error.code?.startsWith('HPE_') && socket.writable)
      refuseRaw('http', socket as Socket, { host: '', port: 0, reason: 'bad-request', rule: null }, Date.now());
    else socket.destroy();
  });

  function track(work: Promise<void>): void {
    const settled = work.catch(() => undefined);
    pending.add(settled);
    void settled.then(() => pending.delete(settled));
  }

  function record(kind: EgressKind, started: number, outcome: Outcome): void {
    log.record({
      time: new Date(started).toISOString(),
      cell: options.cell ?? '',
      run: options.run ?? '',
      kind,
      host: (normalizeHost(outcome.host) ?? outcome.host).slice(0, 255),
      port: outcome.port,
      address: outcome.address,
      decision: outcome.decision,
      rule: outcome.rule,
      reason: outcome.reason,
      bytesUp: outcome.bytesUp ?? 0,
      bytesDown: outcome.bytesDown ?? 0,
      durationMs: Date.now() - started,
      ...(outcome.revoked ? { revoked: true as const } : {}),
      ...(outcome.inspected ? { inspected: true as const } : {}),
      ...(outcome.method !== undefined ? { method: outcome.method, path: outcome.path, status: outcome.status } : {}),
      ...(outcome.injected ? { injected: outcome.injected } : {}),
    });
  }

  function refuseRaw(kind: EgressKind, client: Socket, denial: Denial, started: number, address: string | null = null) {
    record(kind, started, { ...denial, address, decision: 'deny' });
    if (client.writable) client.end(rawDenyResponse(denial));
    else client.destroy();
    client.resume(); // discard the rest, so the client's close is seen
    client.setTimeout(5000, () => client.destroy());
  }

  function authFailure(req: IncomingMessage): 'proxy-auth-required' | 'proxy-auth-invalid' | undefined {
    const header = req.headers['proxy-authorization'];
    const result = checkProxyAuthorization(typeof header === 'string' ? header : undefined, options.token);
    return result === 'ok' ? undefined : result;
  }

  async function destination(request: DestinationRequest): Promise<DestinationResult> {
    const result = await openDestination(
      {
        matcher,
        lookup,
        connectTimeoutMs,
        track: (socket) => {
          upstreams.add(socket);
          socket.once('close', () => upstreams.delete(socket));
        },
      },
      request,
    );
    if (!result.ok || state === 'listening') return result;
    result.upstream.destroy();
    return {
      ok: false,
      denial: { host: result.host, port: result.port, reason: 'gateway-closing', rule: null },
      address: null,
    };
  }

  function tunnelHooks(kind: EgressKind, started: number, inspected: boolean): TunnelHooks {
    return {
      matcher: () => matcher,
      opened: (tunnel) => {
        tunnels.add(tunnel);
        if (inspected) inspectedTunnels.add(tunnel);
      },
      closed: (tunnel, outcome) => {
        tunnels.delete(tunnel);
        const { host, port, address } = tunnel.target;
        record(kind, started, { ...outcome, host, port, address, inspected });
      },
    };
  }

  /**
   * A spliced tunnel reads its upstream into pooled buffers (`onread`); an inspected one
   * keeps node's reads for its TLS socket. So the choice is made before connecting
   * (`readsFor`) and kept.
   */
  function readsFor(host: string, port: number): PooledReads | undefined {
    return inspection.inspects(host, port) ? undefined : createPooledReads();
  }

  /** Splices the tunnel, or terminates its TLS when the destination is inspected. */
  function joinTunnel(
    client: Socket,
    upstream: Socket,
    head: Buffer,
    target: TunnelTarget,
    started: number,
    reads: PooledReads | undefined,
  ): Promise<void> {
    const kind = target.kind;
    if (reads)
      return spliceTunnel(client, upstream, head, target, tunnelHooks(kind, started, false), {
        upstream: reads,
        client: clientReads.get(client),
      });
    return inspectTunnel(client, upstream, head, target, tunnelHooks(kind, started, true), inspectContext(target));
  }

  function inspectContext(target: TunnelTarget): InspectContext {
    const inspect = options.inspect;
    if (!inspect) throw new AgentcellError('INTERNAL', 'inspection without a cell CA');
    return {
      secureContext: (host) => inspect.leaves.secureContext(host),
      upstreamTrust() {
        // Parsing a few hundred CAs takes milliseconds: once per gateway, not per connection.
        upstreamTrust ??= createSecureContext({ ca: [...inspect.upstreamCa] });
        return upstreamTrust;
      },
      inspection: () => inspection,
      async reopen() {
        const result = await destination({ host: target.host, port: target.port });
        if (!result.ok)
          throw new Error(`${result.denial.reason}${result.denial.detail ? `: ${result.denial.detail}` : ''}`);
        return result.upstream;
      },
      recordRequest: (started, request) => record('request', started, request),
      ...(spy ? { spy } : {}),
      redact: (text) => redactSecrets(text, redactions),
    };
  }

  async function handleConnect(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    const started = Date.now();
    const target = parseAuthority(req.url ?? '');
    const host = target?.host ?? req.url ?? '';
    const port = target?.port ?? 0;
    const auth = authFailure(req);
    if (auth) return refuseRaw('connect', client, { host, port, reason: auth, rule: null }, started);
    if (!target) return refuseRaw('connect', client, { host, port, reason: 'bad-request', rule: null }, started);
    const reads = readsFor(target.host, target.port);
    const result = await destination({ ...target, ...(reads ? { reads } : {}) });
    if (!result.ok) return refuseRaw('connect', client, result.denial, started, result.address);
    client.write(CONNECT_ESTABLISHED);
    const { upstream, ...rest } = result;
    await joinTunnel(client, upstream, head, { kind: 'connect', ...rest }, started, reads);
  }

  async function handleForward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    req.socket.setTimeout(0);
    const parsed = parseForwardUrl(req.url);
    const target = 'url' in parsed ? forwardTarget(parsed.url) : { host: '', port: 0 };
    const refuse = (denial: Denial, address: string | null = null): void => {
      record('http', started, { ...denial, address, decision: 'deny' });
      const response = denyResponse(denial);
      res.writeHead(response.status, response.headers).end(response.body);
    };
    const auth = authFailure(req);
    if (auth) return refuse({ ...target, reason: auth, rule: null });
    if ('problem' in parsed) {
      const detail =
        parsed.problem === 'unsupported'
          ? 'only http:// URLs are forwarded; use CONNECT for TLS'
          : 'not a proxy request: send an absolute http:// URL or CONNECT';
      return refuse({ ...target, reason: parsed.problem, rule: null, detail });
    }
    // An allowed but inspected host: cleartext would skip its checks. (Not allowed: refused below as usual.)
    if (inspection.inspects(target.host, target.port) && matcher.decide(target.host, target.port).decision === 'allow')
      return refuse({ ...target, reason: 'inspect-needs-tls', rule: null });
    const result = await destination({ ...target, cleartext: true });
    if (!result.ok) return refuse(result.denial, result.address);
    const { upstream, host, port, address, rule } = result;
    let revoked = false;
    const entry: OpenTunnel = {
      target: { kind: 'http', host, port, address, rule },
      cleartext: true,
      revoke() {
        revoked = true;
        upstream.destroy();
        res.destroy();
      },
    };
    tunnels.add(entry);
    try {
      await relayHttpRequest(req, res, upstream, parsed.url);
    } finally {
      tunnels.delete(entry);
      const [bytesUp, bytesDown] = [upstream.bytesWritten, upstream.bytesRead];
      record('http', started, {
        host,
        port,
        address,
        decision: 'allow',
        rule,
        reason: 'allow-rule',
        bytesUp,
        bytesDown,
        revoked,
      });
    }
  }

  async function handleSocks(client: Socket, initial: Buffer): Promise<void> {
    const started = Date.now();
    const deny = (reply: Buffer, denial: Denial, address: string | null = null): void => {
      record('socks', started, { ...denial, address, decision: 'deny' });
      client.end(reply);
      client.resume();
      client.setTimeout(5000, () => client.destroy());
    };
    const anonymous = { host: '', port: 0, rule: null };
    try {
      const greeting = await readFrame(client, initial, parseGreeting);
      if (!greeting.value.includes(METHOD_USER_PASSWORD))
        return deny(Buffer.from([SOCKS_VERSION, METHOD_NONE_ACCEPTABLE]), {
          ...anonymous,
          reason: 'proxy-auth-required',
        });
      client.write(Buffer.from([SOCKS_VERSION, METHOD_USER_PASSWORD]));
      const credentials = await readFrame(client, greeting.rest, parseUserPassword);
      const { user, password } = credentials.value;
      if (checkCredentials(user, password, options.token) !== 'ok')
        return deny(Buffer.from([0x01, 0x01]), { ...anonymous, reason: 'proxy-auth-invalid' });
      client.write(Buffer.from([0x01, 0x00]));
      const request = await readFrame(client, credentials.rest, parseRequest);
      const { command, host, port } = request.value;
      if (host === undefined)
        return deny(socksReply(0x08), { ...anonymous, reason: 'unsupported', detail: 'SOCKS address type' });
      if (command !== COMMAND_CONNECT)
        return deny(socksReply(0x07), { host, port, rule: null, reason: 'unsupported', detail: 'SOCKS command' });
      const reads = readsFor(host, port);
      const result = await destination({ host, port, ...(reads ? { reads } : {}) });
      if (!result.ok) return deny(socksReply(socksCode(result.denial.reason)), result.denial, result.address);
      client.write(socksReply(0x00));
      const { upstream, ...rest } = result;
      await joinTunnel(client, upstream, request.rest, { kind: 'socks', ...rest }, started, reads);
    } catch (error) {
      if (error instanceof FrameError && error.why !== 'closed')
        record('socks', started, { ...anonymous, address: null, decision: 'deny', reason: 'bad-request' });
      client.destroy();
    }
  }

  /** The listeners pause new connections, so that they can be re-wrapped to read into pooled buffers. */
  function acceptPaused(accepted: Socket): void {
    const reads = createPooledReads();
    const socket = withPooledReads(accepted, reads);
    if (socket) clientReads.set(socket, reads);
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
          if (value === SOCKS_VERSION) return handleSocks(socket, rest);
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
      for (const socket of [...clients, ...upstreams]) socket.destroy();
      await Promise.race([Promise.all([...pending]), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      await Promise.all(stopped);
      await log.close();
      await spy?.close();
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
        await log.open();
        await spy?.open();
        if (options.socketPath !== undefined) {
          clearStaleSocket(options.socketPath);
          await listenOn(createNetServer({ allowHalfOpen: true, pauseOnConnect: true }, acceptPaused), {
            path: options.socketPath,
          });
          chmodSync(options.socketPath, options.socketMode ?? 0o600);
          address.socketPath = options.socketPath;
        }
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
      return address;
    },
    reload(rules) {
      const next = compileHostRules(rules);
      // Keys a reload leaves out keep their value: a reload of allow/deny alone never drops L7 rules.
      const nextRules = { inspect: rules.inspect ?? inspectRules.inspect, rule: rules.rule ?? inspectRules.rule };
      const nextInspection = compileInspection(nextRules, options.inspect);
      matcher = next;
      inspectRules = nextRules;
      inspection = nextInspection;
      let revoked = 0;
      for (const tunnel of [...tunnels]) {
        const { host, port } = tunnel.target;
        // A tunnel spliced before its host became inspected would skip the L7 rules: close it.
        const skipsInspection = !inspectedTunnels.has(tunnel) && nextInspection.inspects(host, port);
        if (stillAllowed(next, tunnel) && !skipsInspection) continue;
        tunnel.revoke();
        revoked++;
      }
      return { revoked };
    },
    counters: () => log.counters(),
    close,
  };
}

/** Inspection rules; refused (POLICY_INVALID) when they inspect something and there is no cell CA to do it with. */
function compileInspection(rules: InspectRules, inspect: GatewayInspectOptions | undefined): InspectMatcher {
  const secrets = inspect?.secrets ?? [];
  const compiled = compileInspectRules(rules, secrets);
  const wanted = (rules.inspect?.length ?? 0) + (rules.rule?.length ?? 0) + secrets.length;
  if (wanted > 0 && !inspect)
    throw new AgentcellError(
      'POLICY_INVALID',
      'network.inspect / network.rule need TLS inspection, and this gateway was started without a cell CA',
    );
  return compiled;
}

function stillAllowed(matcher: HostMatcher, tunnel: OpenTunnel): boolean {
  const { host, port, address } = tunnel.target;
  if (matcher.decide(host, port, { cleartext: tunnel.cleartext }).decision === 'deny') return false;
  if (matcher.denyForAddress(address, port)) return false;
  return guardAddress(address, (candidate) => matcher.listsAddress(candidate, port, host)).allowed;
}

/** `host:port` or `[v6]:port` from a CONNECT request line; undefined if it isn't one. */
function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const { host, port } = splitHostPort(authority);
  if (host === '' || port === undefined || !/^\d{1,5}$/.test(port)) return undefined;
  const number = Number(port);
  return number >= 1 && number <= 65535 ? { host, port: number } : undefined;
}

function socksCode(reason: EgressReason): SocksReplyCode {
  switch (reason) {
    case 'resolve-failed':
      return 0x04;
    case 'connect-failed':
      return 0x05;
    case 'gateway-closing':
      return 0x01;
    default:
      return 0x02;
  }
}

/** A leftover socket from a crashed gateway is replaced; any other file is not touched. */
function clearStaleSocket(path: string): void {
  try {
    if (!lstatSync(path).isSocket())
      throw new AgentcellError('FILE_EXISTS', `${path} exists and is not a socket; not replacing it`);
    rmSync(path);
  } catch (error) {
    if (error instanceof AgentcellError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
