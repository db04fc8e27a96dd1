import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The per-launch secrets: the token in the printed URL, and the one every form posts back. */
export interface UiSecrets {
  token: string;
  csrf: string;
}

export function newUiSecrets(): UiSecrets {
  return { token: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url') };
}

/** Cookies are not per port, so the name is: two dashboards on one host keep their own. */
export const cookieName = (port: number): string => `agentcell-ui-${port}`;

/** The header a script (or curl) may send the token in instead of the cookie. */
export const TOKEN_HEADER = 'x-agentcell-token';

export type GuardVerdict =
  | { ok: true }
  /** The token came in the URL: set the cookie and redirect to `location` (the URL without it). */
  | { ok: true; setCookie: string; location: string }
  | { ok: false; status: 401 | 403; why: string };

export function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Whether a request may reach the dashboard. Host must name this loopback port (a DNS
 * rebinding page sends its own name); Origin and Sec-Fetch-Site, when sent, must be
 * this origin (another page's form or fetch); and the per-launch token must come as the
 * cookie, the header, or (only on a GET, which then drops it from the URL) `?token=`.
 */
export function guardRequest(req: IncomingMessage, url: URL, port: number, secrets: UiSecrets): GuardVerdict {
  const host = req.headers.host ?? '';
  if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`)
    return { ok: false, status: 403, why: `Host ${host || '(none)'} is not this dashboard's loopback address` };
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${host}`)
    return { ok: false, status: 403, why: `Origin ${origin} is not this dashboard` };
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return { ok: false, status: 403, why: `a ${String(site)} request` };
  const header = req.headers[TOKEN_HEADER];
  if (
    sameSecret(cookie(req, cookieName(port)), secrets.token) ||
    sameSecret(header as string | undefined, secrets.token)
  )
    return { ok: true };
  const given = url.searchParams.get('token');
  if (req.method === 'GET' && given !== null && sameSecret(given, secrets.token)) {
    url.searchParams.delete('token');
    return {
      ok: true,
      setCookie: `${cookieName(port)}=${secrets.token}; Path=/; HttpOnly; SameSite=Strict`,
      location: url.pathname + url.search,
    };
  }
  return { ok: false, status: 401, why: 'no valid token: open the URL agentcell ui printed' };
}

/**
 * Headers on every answer: nothing from elsewhere loads, no frame, no referrer to other
 * sites, no cache, no CORS. (`no-referrer` would make Chromium send `Origin: null` on the
 * dashboard's own form POSTs, which the Origin check refuses.)
 */
export const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
  'cross-origin-resource-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
};
