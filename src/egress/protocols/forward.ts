import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayContext } from '../gateway/gateway-context.js';
import { proxyAuthorizationOf } from './connect.js';
import { denyResponse, type Denial } from './deny-response.js';
import { createPooledReads } from '../stream/pooled-reads.js';
import { forwardTarget, parseForwardUrl, relayHttpRequest } from './relay-http-request.js';

/**
 * A forward-proxy request (`GET http://host:port/path`): the token, an `http://` URL,
 * never to an allowed inspected host (cleartext would skip its checks), the checked
 * destination with the cleartext rule (an allow entry naming the port), then the relay.
 * Its line is written when it ends, with its byte counts; a reload can revoke it.
 */
export async function handleForward(gateway: GatewayContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = Date.now();
  req.socket.setTimeout(0);
  const parsed = parseForwardUrl(req.url);
  const target = 'url' in parsed ? forwardTarget(parsed.url) : { host: '', port: 0 };
  const refuse = (denial: Denial, address: string | null = null): void => {
    gateway.record('http', started, { ...denial, address, decision: 'deny' });
    const response = denyResponse(denial);
    res.writeHead(response.status, response.headers).end(response.body);
  };
  const auth = gateway.authFailure(proxyAuthorizationOf(req));
  if (auth) return refuse({ ...target, reason: auth, rule: null });
  if ('problem' in parsed) {
    const detail =
      parsed.problem === 'unsupported'
        ? 'only http:// URLs are forwarded; use CONNECT for TLS'
        : 'not a proxy request: send an absolute http:// URL or CONNECT';
    return refuse({ ...target, reason: parsed.problem, rule: null, detail });
  }
  // An allowed but inspected host: cleartext would skip its checks. (Not allowed: refused below as usual.)
  if (
    gateway.inspects(target.host, target.port) &&
    gateway.matcher().decide(target.host, target.port).decision === 'allow'
  )
    return refuse({ ...target, reason: 'inspect-needs-tls', rule: null });
  // The response is read into pooled buffers and its body written on from them (no copy).
  const reads = createPooledReads();
  const result = await gateway.destination({ ...target, cleartext: true, reads });
  if (!result.ok) return refuse(result.denial, result.address);
  const { upstream, host, port, address, rule } = result;
  let revoked = false;
  let kernelBytes = 0;
  const release = gateway.holdOpen({
    target: { kind: 'http', host, port, address, rule },
    cleartext: true,
    revoke() {
      revoked = true;
      upstream.destroy();
      res.destroy();
    },
  });
  try {
    kernelBytes = await relayHttpRequest(req, res, upstream, reads, parsed.url);
  } finally {
    release();
    const [bytesUp, bytesDown] = [upstream.bytesWritten, upstream.bytesRead + kernelBytes];
    gateway.record('http', started, {
      host,
      port,
      address,
      decision: 'allow',
      rule,
      reason: 'allow-rule',
      bytesUp,
      bytesDown,
      revoked,
      kernelRelay: kernelBytes > 0,
    });
  }
}
