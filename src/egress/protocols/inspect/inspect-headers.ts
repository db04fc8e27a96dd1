import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { connectionTokens, HOP_BY_HOP } from '../hop-by-hop.js';
import { maskText } from './redact-stream.js';

/** The client's request headers for upstream, without hop-by-hop ones and the `drop` names (injected). */
export function forwardHeaders(req: IncomingMessage, drop: Set<string>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  const named = connectionTokens(req.headers.connection);
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] ?? '';
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || drop.has(lower)) continue;
    append(headers, lower, req.rawHeaders[i + 1] ?? '');
  }
  return headers;
}

/**
 * The upstream's response headers for the client, without hop-by-hop ones and the `drop`
 * names, the `masked` forms starred.
 */
export function responseHeaders(
  response: IncomingMessage,
  masked: readonly Buffer[],
  drop: ReadonlySet<string> = new Set(),
): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  const named = connectionTokens(response.headers.connection);
  for (let i = 0; i + 1 < response.rawHeaders.length; i += 2) {
    const lower = (response.rawHeaders[i] ?? '').toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || drop.has(lower)) continue;
    append(headers, lower, maskText(response.rawHeaders[i + 1] ?? '', masked));
  }
  return headers;
}

function append(headers: OutgoingHttpHeaders, name: string, value: string): void {
  const existing = headers[name];
  if (existing === undefined) headers[name] = value;
  else if (Array.isArray(existing)) existing.push(value);
  else headers[name] = [String(existing), value];
}
