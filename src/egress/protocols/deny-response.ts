import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { ipFamily } from '../../_internal/ip-family.js';
import type { EgressReason } from '../log/egress-log.js';

export interface Denial {
  host: string;
  port: number;
  reason: EgressReason;
  rule: string | null;
  /** Extra words for the human message, e.g. the address class. */
  detail?: string;
}

export interface DenyResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * What a refused HTTP client gets: 403 (407 for the proxy token, 502 when the
 * destination can't be reached, 400 for junk), `X-Agentcell-Denied: <reason code>`,
 * `X-Agentcell-Rule: <pattern>` when a rule decided, and a one-line body
 * `agentcell: denied <host>:<port>: <code> (<what to do>)`.
 */
export function denyResponse(denial: Denial): DenyResponse {
  const status = statusFor(denial.reason);
  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Agentcell-Denied': denial.reason,
  };
  if (denial.rule !== null) headers['X-Agentcell-Rule'] = denial.rule;
  if (status === 407) headers['Proxy-Authenticate'] = 'Basic realm="agentcell"';
  const body = `agentcell: denied ${hostPort(denial.host, denial.port)}: ${denial.reason} (${explain(denial)})\n`;
  return { status, headers, body };
}

/** A fatal TLS `access_denied` alert: what a TLS client gets instead of a 403 it could not read. */
export const TLS_ACCESS_DENIED = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31]);

/**
 * Ends a refused client with `reply` (a raw response, an alert, a SOCKS reply), then
 * discards what else it sends so its close is seen (and its line logged), for 5 s at most.
 */
export function endRefused(client: Socket, reply: string | Buffer): void {
  if (client.writable) client.end(reply);
  else client.destroy();
  client.resume();
  client.setTimeout(5000, () => client.destroy());
}

/** The same response as raw bytes, for CONNECT and for cleartext inside a tunnel. */
export function rawDenyResponse(denial: Denial): string {
  const { status, headers, body } = denyResponse(denial);
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Denied'}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value.replace(/[\r\n]/g, ' ')}`);
  lines.push(`Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close', '', body);
  return lines.join('\r\n');
}

export function hostPort(host: string, port: number): string {
  return `${ipFamily(host) === 6 ? `[${host}]` : host}:${port}`;
}

function statusFor(reason: EgressReason): number {
  switch (reason) {
    case 'proxy-auth-required':
    case 'proxy-auth-invalid':
      return 407;
    case 'resolve-failed':
    case 'connect-failed':
      return 502;
    case 'bad-request':
    case 'invalid-host':
      return 400;
    case 'gateway-closing':
      return 503;
    case 'upstream-cert-invalid':
    case 'response-encoding':
      return 502;
    default:
      return 403;
  }
}

function explain({ reason, rule, detail }: Denial): string {
  switch (reason) {
    case 'deny-rule':
      return `denied by the rule "${rule ?? ''}" in [network] deny`;
    case 'not-allowed':
      return 'no [network] allow entry matches; ask the user to allow it';
    case 'cleartext-not-allowed':
      return `cleartext HTTP needs an allow entry naming the port (e.g. "host:80"); "${rule ?? ''}" allows TLS only`;
    case 'blocked-address':
      return `${detail ?? 'a non-public'} address the policy does not list; list the address in [network] allow or resolve`;
    case 'resolve-failed':
      return `could not resolve the name${detail ? `: ${detail}` : ''}`;
    case 'connect-failed':
      return `could not connect${detail ? `: ${detail}` : ''}`;
    case 'proxy-auth-required':
      return 'proxy authentication required: user "agentcell", password the run\'s token';
    case 'proxy-auth-invalid':
      return 'wrong proxy credentials';
    case 'invalid-host':
      return 'not a valid host name, address or port';
    case 'unsupported':
      return detail ?? 'not supported by the gateway';
    case 'bad-request':
      return detail ?? 'not a proxy request';
    case 'sni-mismatch':
      return 'the TLS server name differs from the requested host';
    case 'sni-missing':
      return 'TLS without a server name to a named host';
    case 'tls-unreadable':
      return 'a TLS ClientHello the gateway could not read';
    case 'gateway-closing':
      return 'the gateway is shutting down';
    case 'host-mismatch':
      return `the HTTP Host header ${detail ?? ''} differs from the TLS server name; send Host equal to the name you connected to`;
    case 'no-matching-rule':
      return `no [[network.rule]] for this host allows ${detail ?? 'this request'}; ask the user to add one`;
    case 'upstream-cert-invalid':
      return `the server's certificate is not trusted${detail ? ` (${detail})` : ''}; add its CA to [network] upstream_ca if it is expected`;
    case 'inspect-needs-tls':
      return 'this host is inspected and reachable over TLS (HTTPS) only';
    case 'response-encoding':
      return `the server answered in an encoding (${detail ?? '?'}) the gateway can't decode to mask the injected secret; ask it for identity or gzip`;
    case 'allow-rule':
      return 'allowed';
    case 'learned':
      return 'reached in learn mode';
  }
}
