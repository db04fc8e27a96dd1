import { request, type Agent, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { splitHostPort } from '../../../policy/host-pattern.js';
import type { EgressReason } from '../../log/egress-log.js';
import { normalizeHost } from '../../rules/host-rules.js';
import type { ProxySecret } from '../../rules/inspect-rules.js';
import { denyResponse, rawDenyResponse, type Denial } from '../deny-response.js';
import type { TunnelTarget } from '../splice-tunnel.js';
import { BodyCapture } from './body-capture.js';
import { bodyDecoding, decodeBody } from './decode-response.js';
import type { InspectContext, RequestRecord } from './inspect-context.js';
import { forwardHeaders, responseHeaders } from './inspect-headers.js';
import { isWebSocketUpgrade, relayUpgrade } from './inspect-upgrade.js';
import { createMaskStream, maskedForms } from './redact-stream.js';

/** The HTTP handlers of one inspected tunnel (its TLS terminated by the gateway). */
export interface InspectedRequests {
  /** One request: checked, sent upstream with its secrets, answered (masked), logged. */
  request(req: IncomingMessage, res: ServerResponse): void;
  /** An upgrade: a checked WebSocket is relayed raw once upstream switches; others are refused. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
}

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

/** A request that passed the checks, with its headers for upstream. */
interface CheckedRequest {
  rule: string | null;
  injections: readonly ProxySecret[];
  headers: OutgoingHttpHeaders;
  /** The secrets' forms (raw and encoded) to mask in what comes back. */
  masked: Buffer[];
}

/**
 * The requests on an inspected tunnel to `target`: each one's Host must be the target,
 * it is checked against the L7 rules in force, gets the proxy secrets meant for this
 * host (same-named headers from the cell are dropped first), and goes upstream through
 * `agent` (TLS verified against system CAs plus `upstream_ca`). Every request is a
 * `request` event.
 */
export function inspectedRequests(target: TunnelTarget, context: InspectContext, agent: Agent): InspectedRequests {
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

  function upstreamRefusal(error: NodeJS.ErrnoException): Denial {
    const code = error.code ?? '';
    return UNTRUSTED_CODES.has(code)
      ? refusalFor('upstream-cert-invalid', code)
      : refusalFor('connect-failed', code || error.message);
  }

  /**
   * A WebSocket upgrade gets the same checks and secrets as a request, then is relayed
   * raw both ways once the upstream switches protocols; one `request` event when it
   * closes, with the bytes relayed. Other upgrades (h2c…) are refused.
   */
  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
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
    // An LLM request opens a turn: the run checkpoints its layer while the request goes upstream,
    // and whatever comes back reaches the agent only once the copy is taken. The agent, waiting
    // on that answer, has not acted since it sent the request, so the copy is the workspace as
    // it was then; the copy and the upstream's latency overlap instead of adding up.
    const turn = provider
      ? context.llmRequestStarts?.({ at: new Date(started).toISOString(), provider, host: target.host, path })
      : undefined;
    const afterTurn = (reply: () => void): void => {
      if (turn) void turn.then(reply, reply);
      else reply();
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
    upstreamRequest.on('response', (response: IncomingMessage) => afterTurn(() => answer(response)));
    const answer = (response: IncomingMessage): void => {
      upstreamStatus = response.statusCode ?? 0;
      if (res.destroyed) return void response.destroy(); // the client went away while its turn was copied
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
    };
    upstreamRequest.on('error', (error: NodeJS.ErrnoException) => afterTurn(() => failed(error)));
    const failed = (error: NodeJS.ErrnoException): void => {
      if (res.destroyed) return; // logged when the client went away
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
    };
  }

  return { request: handleRequest, upgrade };
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
