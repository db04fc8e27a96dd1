import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { splitHostPort } from '../../policy/host-pattern.js';
import type { GatewayContext } from '../gateway/gateway-context.js';

const CONNECT_ESTABLISHED = 'HTTP/1.1 200 Connection established\r\n\r\n';

/**
 * HTTP CONNECT: the token, a `host:port` target, the checked destination, then `200`
 * and the tunnel (spliced, or inspected when the destination is). Refusals are the raw
 * 403/407/502 with the reason.
 */
export async function handleConnect(
  gateway: GatewayContext,
  req: IncomingMessage,
  client: Socket,
  head: Buffer,
): Promise<void> {
  const started = Date.now();
  const target = parseAuthority(req.url ?? '');
  const host = target?.host ?? req.url ?? '';
  const port = target?.port ?? 0;
  const auth = gateway.authFailure(proxyAuthorizationOf(req));
  if (auth) return gateway.refuseRaw('connect', client, { host, port, reason: auth, rule: null }, started);
  if (!target) return gateway.refuseRaw('connect', client, { host, port, reason: 'bad-request', rule: null }, started);
  const result = await gateway.tunnelDestination(target.host, target.port);
  if (!result.ok) return gateway.refuseRaw('connect', client, result.denial, started, result.address);
  client.write(CONNECT_ESTABLISHED);
  await gateway.joinTunnel(client, head, 'connect', result, started);
}

/** The request's `Proxy-Authorization`, if it sent exactly one. */
export function proxyAuthorizationOf(req: IncomingMessage): string | undefined {
  const header = req.headers['proxy-authorization'];
  return typeof header === 'string' ? header : undefined;
}

/** `host:port` or `[v6]:port` from a CONNECT request line; undefined if it isn't one. */
function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const { host, port } = splitHostPort(authority);
  if (host === '' || port === undefined || !/^\d{1,5}$/.test(port)) return undefined;
  const number = Number(port);
  return number >= 1 && number <= 65535 ? { host, port: number } : undefined;
}
