import {
  Agent,
  createServer,
  request,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, TLSSocket, type SecureContext } from 'node:tls';
import { splitHostPort } from '../../../policy/host-pattern.js';
import { classifyFirstBytes, FIRST_BYTES_LIMIT } from '../classify-first-bytes.js';
import { denyResponse, rawDenyResponse, type Denial } from '../deny-response.js';
import type { EgressEvent, EgressReason } from '../../log/egress-log.js';
import { normalizeHost } from '../../rules/host-rules.js';
import type { InspectMatcher, ProxySecret } from '../../rules/inspect-rules.js';
import { isWebSocketUpgrade, relayUpgrade } from './inspect-upgrade.js';
import { FrameError, readFrame } from '../../stream/read-frame.js';
import { forwardHeaders, responseHeaders } from './inspect-headers.js';
import { withPrefix } from '../../stream/prefixed-stream.js';
import { createMaskStream, maskedForms } from './redact-stream.js';
import { bodyDecoding, decodeBody } from './decode-response.js';
import type { OpenTunnel, TunnelHooks, TunnelOutcome, TunnelTarget } from '../splice-tunnel.js';
import type { CapturedBody, SpyRecorder } from '../../log/spy-log.js';

/** The fields of a `request` event the tunnel knows; the gateway stamps time, cell, run. */
export type RequestRecord = Pick<
  EgressEvent,
  'host' | 'port' | 'address' | 'decision' | 'rule' | 'reason' | 'bytesUp' | 'bytesDown' | 'method' | 'path' | 'status'
> & { injected?: string[] };

export interface InspectContext {
  /** The leaf certificate for a host, signed by the cell CA (cached). */
  secureContext(host: string): Promise<SecureContext>;
  /** Trusts what an upstream certificate must chain to (system CAs plus `upstream_ca`); made once per gateway. */
  upstreamTrust(): SecureContext;
  /** The inspect rules in force now (a reload may replace them). */
  inspection(): InspectMatcher;
  /** A new checked TCP connection to the same destination, for requests after the first connection closed. */
  reopen(): Promise<Socket>;
  /** Logs one request decision (`request` event) that started at `started`. */
  recordRequest(started: number, record: RequestRecord): void;
  /** Captures LLM API exchanges when given. */
  spy?: SpyRecorder;
  /** Replaces secret values in anything logged. */
  redact(text: string): string;
}

const TLS_ACCESS_DENIED = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31]);
/** A client that doesn't finish its TLS handshake with the gateway in this time is dropped. */
const HANDSHAKE_TIMEOUT_MS = 30_000;
const UNTRUSTED_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Terminates the client's TLS with a leaf minted for the target (its ClientHello must
 * name the target, as for any tunnel), then serves HTTP/1.1 on it: each request's
 * Host must be the target, it is checked against the L7 rules, gets the proxy secrets
 * meant for this host (same-named headers from the cell are dropped first), and goes
 * upstream over TLS verified against system CAs plus `upstream_ca`. Keep-alive works
 * both ways; every request is a `request` event. Resolves when everything is closed
 * and `hooks.closed` has been told (the tunnel's own event).
 */
export function inspectTunnel(
  client: Socket,
  upstream: Socket,
  initial: Buffer,
  target: TunnelTarget,
  hooks: TunnelHooks,
  context: InspectContext,
): Promise<void> {
  let outcome: Omit<TunnelOutcome, 'bytesUp' | 'bytesDown'> = {
    decision: 'allow',
    rule: target.rule,
    reason: 'allow-rule',
    revoked: false,
  };
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
  const tunnel: OpenTunnel = {
    target,
    cleartext: false,
    revoke() {
      outcome = { ...outcome, revoked: true };
      destroyAll();
    },
  };
  hooks.opened(tunnel);
  client.setTimeout(0);
  client.on('error', destroyAll);
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

  const done = closed(client).then(async () => {
    destroyAll();
    await Promise.all(counted); // their byte counts land in the tunnel's line
    hooks.closed(tunnel, { ...outcome, bytesUp, bytesDown });
  });

  async function openUpstream(): Promise<Duplex> {
    let raw = spare;
    spare = undefined;
    if (!raw || raw.destroyed) {
      raw = await context.reopen();
      watch(raw);
    }
    const name = isIP(target.host) === 0 ? target.host : undefined;
    const secure = tlsConnect({
      socket: raw,
      ...(name !== undefined ? { servername: name } : {}),
      host: target.host,
      secureContext: context.upstreamTrust(),
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
        reject(error);
      });
    });
    secure.on('error', () => secure.destroy());
    return secure;
  }

  readFrame(
    client,
    initial,
    (data) => {
      const first = classifyFirstBytes(data);
      return first.kind === 'more' ? 'more' : { value: first, used: 0 };
    },
    FIRST_BYTES_LIMIT,
  )
    .then(
      async ({ value, rest }) => {
        const refusal = firstBytesRefusal(value, target);
        if (refusal) {
          outcome = { ...outcome, decision: 'deny', reason: refusal, rule: target.rule };
          spare?.destroy();
          if (value.kind === 'http')
            client.end(rawDenyResponse({ host: target.host, port: target.port, reason: refusal, rule: target.rule }));
          else client.end(TLS_ACCESS_DENIED);
          client.resume();
          client.setTimeout(5000, () => client.destroy());
          return;
        }
        const secureContext = await context.secureContext(target.host);
        if (client.destroyed) return;
        tls = new TLSSocket(withPrefix(client, rest), {
          isServer: true,
          secureContext,
          ALPNProtocols: ['http/1.1'],
        });
        tls.on('error', destroyAll);
        tls.once('close', () => client.destroy());
        const handshake = setTimeout(destroyAll, HANDSHAKE_TIMEOUT_MS);
        tls.once('secure', () => clearTimeout(handshake));
        tls.once('close', () => clearTimeout(handshake));
        const server = createServer({ requireHostHeader: false });
        server.keepAliveTimeout = 60_000;
        server.on('request', (req: IncomingMessage, res: ServerResponse) => {
          try {
            handleRequest(req, res);
          } catch {
            destroyAll(); // fail closed: a request we can't relay ends the tunnel
          }
        });
        server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
          try {
            handleUpgrade(req, socket, head);
          } catch {
            destroyAll();
          }
        });
        server.on('clientError', (_error: Error, socket: Duplex) => socket.destroy());
        server.emit('connection', tls);
      },
      (error: unknown) => {
        if (error instanceof FrameError && error.why !== 'closed')
          outcome = { ...outcome, decision: 'deny', reason: 'tls-unreadable' };
        destroyAll();
      },
    )
    .catch(destroyAll);

  function refusalFor(reason: EgressReason, detail?: string, rule: string | null = null): Denial {
    return { host: target.host, port: target.port, reason, rule, ...(detail !== undefined ? { detail } : {}) };
  }

  function requestRecord(req: IncomingMessage, denial: Denial | undefined, status: number): RequestRecord {
    return {
      host: target.host,
      port: target.port,
      address: target.address,
      decision: denial ? 'deny' : 'allow',
      rule: denial ? denial.rule : target.rule,
      reason: denial ? denial.reason : 'allow-rule',
      bytesUp: 0,
      bytesDown: 0,
      method: (req.method ?? '').slice(0, 32),
      path: context.redact(pathOf(req.url)).slice(0, 2048),
      status,
    };
  }

  /**
   * The checks every request on the tunnel passes (origin-form, one Host naming the
   * target, the L7 rules in force now), then the headers for upstream: the cell's own,
   * hop-by-hop ones dropped, the proxy secrets for this host in place of same-named ones.
   */
  function checkRequest(req: IncomingMessage): CheckedRequest | { denial: Denial } {
    if (!(req.url ?? '').startsWith('/'))
      return { denial: refusalFor('bad-request', 'send an origin-form request (a path) to an inspected host') };
    const hostHeader = typeof req.headers.host === 'string' ? req.headers.host : '';
    const hostCount = req.rawHeaders.filter((value, i) => i % 2 === 0 && value.toLowerCase() === 'host').length;
    if (hostCount > 1) return { denial: refusalFor('host-mismatch', '(sent more than once)') };
    if (!hostMatches(hostHeader, target))
      return {
        denial: refusalFor('host-mismatch', `"${hostHeader.slice(0, 100).replace(/[^\x20-\x7e]/g, '?')}"`),
      };
    const inspection = context.inspection();
    const decision = inspection.decideRequest(target.host, target.port, req.method ?? 'GET', pathOf(req.url));
    if (!decision.allowed) return { denial: refusalFor(decision.reason, decision.detail, decision.rule) };
    const injections = inspection.injections(target.host, target.port);
    const headers = forwardHeaders(req, new Set(injections.map((s) => s.header.toLowerCase())));
    for (const secret of injections) headers[secret.header] = secret.headerValue;
    const masked = maskedForms(injections.map((secret) => secret.value));
    // Where a secret went, its value is masked on the way back; ask for bodies it can be found in.
    if (masked.length > 0) headers['accept-encoding'] = 'identity';
    return { rule: decision.rule, injections, headers, masked };
  }

  /** The record of an allowed request: its rule and the names of the secrets it got. */
  function allowedRecord(req: IncomingMessage, checked: CheckedRequest, status: number): RequestRecord {
    const record = requestRecord(req, undefined, status);
    if (checked.rule !== null) record.rule = checked.rule;
    if (checked.injections.length > 0) record.injected = checked.injections.map((s) => s.name);
    return record;
  }

  /**
   * A WebSocket upgrade gets the same checks and secrets as a request, then is relayed
   * raw both ways once the upstream switches protocols; one `request` event when it
   * closes, with the bytes relayed. Other upgrades (h2c…) are refused.
   */
  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const started = Date.now();
    const refuse = (denial: Denial): void => {
      context.recordRequest(started, requestRecord(req, denial, denyResponse(denial).status));
      socket.end(rawDenyResponse(denial));
    };
    if (!isWebSocketUpgrade(req))
      return refuse(refusalFor('unsupported', 'an upgrade other than GET with Upgrade: websocket'));
    const checked = checkRequest(req);
    if ('denial' in checked) return refuse(checked.denial);
    // Uncompressed frames, so a secret the upstream reflects is masked like in a body.
    if (checked.masked.length > 0) delete checked.headers['sec-websocket-extensions'];
    relayUpgrade(req, socket, head, { agent, headers: checked.headers, masked: checked.masked }, (result) => {
      if (result.kind === 'failed') return refuse(upstreamRefusal(result.error));
      const record = allowedRecord(req, checked, result.status);
      if (result.kind === 'upgraded') record.bytesUp = result.bytesUp;
      record.bytesDown = result.bytesDown;
      context.recordRequest(started, record);
    });
  }

  function upstreamRefusal(error: NodeJS.ErrnoException): Denial {
    const code = error.code ?? '';
    return UNTRUSTED_CODES.has(code)
      ? refusalFor('upstream-cert-invalid', code)
      : refusalFor('connect-failed', code || error.message);
  }

  function handleRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = Date.now();
    const method = req.method ?? 'GET';
    const path = pathOf(req.url);
    const refuse = (denial: Denial): void => {
      const response = denyResponse(denial);
      res.writeHead(response.status, response.headers).end(response.body);
      req.resume();
      context.recordRequest(started, requestRecord(req, denial, response.status));
    };
    const checked = checkRequest(req);
    if ('denial' in checked) return refuse(checked.denial);
    const { headers, masked } = checked;
    const provider = context.spy?.provider(target.host, path);
    const requestBody = provider ? new BodyCapture() : undefined;
    const responseBody = provider ? new BodyCapture() : undefined;
    let sent = 0;
    let received = 0;
    let upstreamStatus = 0;
    let recorded = false;
    const upstreamRequest = request({ agent, method, path: req.url, headers, setHost: false });
    /** Logs the request once: when its response ends, fails, or the client goes away mid-way. */
    const finish = (status: number, denial?: Denial): void => {
      if (recorded) return;
      recorded = true;
      const record = denial ? requestRecord(req, denial, status) : allowedRecord(req, checked, status);
      context.recordRequest(started, { ...record, bytesUp: sent, bytesDown: received });
      if (provider && context.spy && requestBody && responseBody && !denial)
        context.spy.record({
          time: new Date(started).toISOString(),
          host: target.host,
          method,
          path,
          status,
          provider,
          durationMs: Date.now() - started,
          request: requestBody.result(req.headers),
          response: responseBody.result(undefined),
        });
    };
    req.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      requestBody?.add(chunk);
    });
    req.pipe(upstreamRequest);
    res.once('close', () => {
      if (res.writableFinished) return;
      upstreamRequest.destroy();
      finish(upstreamStatus);
    });
    upstreamRequest.on('response', (response: IncomingMessage) => {
      upstreamStatus = response.statusCode ?? 0;
      responseBody?.setHeaders(response.headers);
      response.on('data', (chunk: Buffer) => {
        received += chunk.length;
        responseBody?.add(chunk);
      });
      const decoding =
        masked.length > 0 && hasBody(method, upstreamStatus) ? bodyDecoding(response.headers) : undefined;
      if (decoding?.kind === 'refuse') {
        response.resume();
        res.once('finish', () => response.destroy());
        const denial = refusalFor('response-encoding', decoding.coding);
        const refusal = denyResponse(denial);
        res.writeHead(refusal.status, refusal.headers).end(refusal.body);
        finish(refusal.status, denial);
        return;
      }
      const drop = new Set(decoding?.kind === 'decode' ? ['content-encoding', 'content-length'] : []);
      res.writeHead(response.statusCode ?? 502, responseHeaders(response, masked, drop));
      if (masked.length === 0) response.pipe(res);
      else {
        const body = decoding?.kind === 'decode' ? decodeBody(response, decoding.codings) : response;
        body.once('error', () => res.destroy());
        body.pipe(createMaskStream(masked)).pipe(res);
      }
      response.once('end', () => finish(response.statusCode ?? 0));
      response.once('aborted', () => res.destroy());
      response.once('error', () => res.destroy());
    });
    upstreamRequest.on('error', (error: NodeJS.ErrnoException) => {
      if (res.headersSent) {
        // The request was allowed and answered; the upstream broke off mid-response.
        res.destroy();
        finish(upstreamStatus);
        return;
      }
      const denial = upstreamRefusal(error);
      const response = denyResponse(denial);
      res.writeHead(response.status, response.headers).end(response.body);
      finish(response.status, denial);
    });
  }

  return done;
}

/** A request that passed the checks, with its headers for upstream. */
interface CheckedRequest {
  rule: string | null;
  injections: readonly ProxySecret[];
  headers: OutgoingHttpHeaders;
  /** The secrets' forms (raw and encoded) to mask in what comes back. */
  masked: Buffer[];
}

/** An agent with one keep-alive connection, made by `open` (the first one is the CONNECT's own). */
class UpstreamAgent extends Agent {
  constructor(private readonly open: () => Promise<Duplex>) {
    super({ keepAlive: true, maxSockets: 1 });
  }

  override createConnection(
    _options: unknown,
    callback?: (error: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    this.open().then(
      (stream) => callback?.(null, stream),
      (error: Error) => callback?.(error, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** Request bodies and responses of LLM API calls, kept up to a cap. */
class BodyCapture {
  static readonly LIMIT = 4 * 1024 * 1024;
  private chunks: Buffer[] = [];
  private size = 0;
  private truncated = false;
  private headers: IncomingMessage['headers'] | undefined;

  add(chunk: Buffer): void {
    if (this.size >= BodyCapture.LIMIT) {
      this.truncated = true;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  setHeaders(headers: IncomingMessage['headers']): void {
    this.headers = headers;
  }

  result(headers: IncomingMessage['headers'] | undefined): CapturedBody {
    const h = headers ?? this.headers ?? {};
    const encoding = h['content-encoding'];
    return {
      contentType: h['content-type'] ?? '',
      ...(encoding !== undefined ? { contentEncoding: encoding } : {}),
      body: Buffer.concat(this.chunks),
      truncated: this.truncated,
    };
  }
}

function firstBytesRefusal(
  first: ReturnType<typeof classifyFirstBytes>,
  target: TunnelTarget,
): EgressReason | undefined {
  switch (first.kind) {
    case 'tls':
      if (first.sni === undefined) return isIP(target.host) === 0 ? 'sni-missing' : undefined;
      return normalizeHost(first.sni) === target.host ? undefined : 'sni-mismatch';
    case 'tls-unreadable':
      return 'tls-unreadable';
    case 'http':
    case 'other':
    case 'more':
      return 'inspect-needs-tls';
  }
}

/** Host (and port, default 443) names the target: the same name the CONNECT and the SNI gave. */
function hostMatches(header: string, target: TunnelTarget): boolean {
  if (header === '') return false;
  const { host, port } = splitHostPort(header);
  if (port !== undefined && !/^\d{1,5}$/.test(port)) return false;
  const number = port === undefined ? 443 : Number(port);
  return normalizeHost(host) === target.host && number === target.port;
}

/** Whether a response to `method` with `status` carries a body (RFC 9110 §6.4.1). */
function hasBody(method: string, status: number): boolean {
  return method !== 'HEAD' && status >= 200 && status !== 204 && status !== 304;
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '';
  const query = raw.indexOf('?');
  return query === -1 ? raw : raw.slice(0, query);
}

function closed(socket: Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}
