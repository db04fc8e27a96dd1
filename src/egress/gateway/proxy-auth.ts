import { randomBytes, timingSafeEqual } from 'node:crypto';

/** The user name every client presents; the password is the run's token. */
export const PROXY_USER = 'agentcell';

export type ProxyAuthResult = 'ok' | 'proxy-auth-required' | 'proxy-auth-invalid';

/** A fresh per-run token: 32 url-safe characters, no `:` or `@`, fine inside a proxy URL. */
export function newProxyToken(): string {
  return randomBytes(24).toString('base64url');
}

/** `Basic base64(agentcell:TOKEN)`, the Proxy-Authorization value clients send. */
export function proxyAuthorization(token: string): string {
  return `Basic ${Buffer.from(`${PROXY_USER}:${token}`).toString('base64')}`;
}

/** Checks an HTTP `Proxy-Authorization` header against the token. */
export function checkProxyAuthorization(header: string | undefined, token: string): ProxyAuthResult {
  if (header === undefined) return 'proxy-auth-required';
  const match = /^\s*basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!match) return 'proxy-auth-invalid';
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return 'proxy-auth-invalid';
  return checkCredentials(decoded.slice(0, colon), decoded.slice(colon + 1), token);
}

/** Checks SOCKS5 (RFC 1929) or decoded Basic credentials; constant time but for the length. */
export function checkCredentials(user: string, password: string, token: string): ProxyAuthResult {
  return same(user, PROXY_USER) && same(password, token) ? 'ok' : 'proxy-auth-invalid';
}

function same(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
