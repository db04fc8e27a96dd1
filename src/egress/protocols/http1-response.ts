/**
 * An HTTP/1.1 response as a forward proxy reads it from its upstream (RFC 9112): the head,
 * then the body's bytes without their framing, handed on as slices of what was read.
 * Node's own client parser copies every body chunk into a new buffer (then garbage), which
 * held a plain-HTTP download through the gateway to a third of a spliced tunnel's speed.
 *
 * Strict where a lenient reading could differ from the client's: a head that is not
 * `HTTP/1.x NNN reason` plus `name: value` lines, obsolete line folding, a Content-Length
 * that is not one decimal number (or repeats with another value), or a malformed chunk is an
 * error, and the proxy answers 502 (or cuts the response if its head already went out).
 */

export interface ResponseHead {
  status: number;
  reason: string;
  /** Name, value, name, value… as received. */
  rawHeaders: string[];
}

export type BodyFraming =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** Delimited by the upstream closing the connection. */
  | { kind: 'close' };

export class ResponseParseError extends Error {}

/** Beyond this a head, a chunk-size line or a trailer section is refused. */
export const HEAD_LIMIT = 64 * 1024;

const STATUS_LINE = /^HTTP\/1\.[01] ([1-9]\d\d)(?: ([^\r\n]*))?$/;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Parses a response head (without its final empty line). */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  const match = STATUS_LINE.exec(lines[0] ?? '');
  if (!match) throw new ResponseParseError('malformed status line');
  const rawHeaders: string[] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = colon === -1 ? '' : line.slice(0, colon);
    // No name, a space before the colon, or a folded line (starts with whitespace): refused.
    if (!TOKEN.test(name)) throw new ResponseParseError('malformed header line');
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (/[\0\r\n]/.test(value)) throw new ResponseParseError('malformed header value');
    rawHeaders.push(name, value);
  }
  return { status: Number(match[1]), reason: match[2] ?? '', rawHeaders };
}

/** How the body after `head` ends (RFC 9112 §6.3), for a response to `method`. */
export function bodyFraming(method: string, head: ResponseHead): BodyFraming {
  if (method === 'HEAD' || head.status === 204 || head.status === 304 || head.status < 200) return { kind: 'none' };
  const values = (wanted: string): string[] => {
    const found: string[] = [];
    for (let i = 0; i + 1 < head.rawHeaders.length; i += 2)
      if (head.rawHeaders[i]?.toLowerCase() === wanted) found.push(head.rawHeaders[i + 1] ?? '');
    return found;
  };
  const codings = values('transfer-encoding')
    .join(',')
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter(Boolean);
  // Transfer-Encoding wins over Content-Length; chunked only counts as the last coding.
  if (codings.length > 0) return codings.at(-1) === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  const lengths = new Set(values('content-length').flatMap((v) => v.split(',').map((part) => part.trim())));
  if (lengths.size === 0) return { kind: 'close' };
  const [length] = [...lengths];
  if (lengths.size > 1 || length === undefined || !/^\d{1,15}$/.test(length))
    throw new ResponseParseError('invalid Content-Length');
  return { kind: 'length', length: Number(length) };
}

export interface ResponseRead {
  /** Set once, by the push that completed the (final, non-1xx) head. */
  head?: ResponseHead;
  framing?: BodyFraming;
  /** Body bytes, unframed: slices of the pushed chunks. */
  body: Buffer[];
  /** The body is complete: whatever follows is not part of this response. */
  done: boolean;
}

export interface ResponseReader {
  /** What these bytes (in order after the last push) held; throws ResponseParseError. */
  push(chunk: Buffer): ResponseRead;
  /** The upstream closed: whether the body was complete (a close-delimited one always is). */
  end(): boolean;
  /** The bytes a Content-Length body still has to come (undefined for any other framing, or before its head). */
  lengthLeft(): number | undefined;
}

/**
 * Reads one response to `method`. Interim 1xx responses are skipped (node's server already
 * answered the client's `Expect: 100-continue`); a 101 is an error, as the proxy forwards
 * no upgrades.
 */
export function createResponseReader(method: string): ResponseReader {
  let state: 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailers' | 'close' | 'done' = 'head';
  let pending = Buffer.alloc(0);
  let remaining = 0;

  /** The next CRLF-ended line from `pending` + `chunk` at `at`, or undefined (then kept in `pending`). */
  function takeLine(chunk: Buffer, at: number): { line: string; next: number } | undefined {
    const data = pending.length > 0 ? Buffer.concat([pending, chunk.subarray(at)]) : chunk.subarray(at);
    const end = data.indexOf('\r\n');
    if (end === -1) {
      if (data.length > HEAD_LIMIT) throw new ResponseParseError('line too long');
      pending = Buffer.from(data);
      return undefined;
    }
    const consumed = end + 2 - pending.length;
    pending = Buffer.alloc(0);
    return { line: data.subarray(0, end).toString('latin1'), next: at + consumed };
  }

  function chunkSize(line: string): number {
    const size = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line)?.[1];
    if (size === undefined) throw new ResponseParseError('malformed chunk size');
    return parseInt(size, 16);
  }

  return {
    push(chunk) {
      const read: ResponseRead = { body: [], done: false };
      let at = 0;
      while (at < chunk.length) {
        switch (state) {
          case 'head': {
            const data = Buffer.concat([pending, chunk.subarray(at)]);
            const end = data.indexOf('\r\n\r\n');
            if (end === -1) {
              if (data.length > HEAD_LIMIT) throw new ResponseParseError('head too long');
              pending = data;
              return read;
            }
            const head = parseResponseHead(data.subarray(0, end).toString('latin1'));
            at += end + 4 - pending.length;
            pending = Buffer.alloc(0);
            if (head.status === 101) throw new ResponseParseError('unexpected 101 Switching Protocols');
            if (head.status < 200) continue;
            const framing = bodyFraming(method, head);
            read.head = head;
            read.framing = framing;
            if (framing.kind === 'none') state = 'done';
            else if (framing.kind === 'length')
              [state, remaining] = framing.length === 0 ? ['done', 0] : ['length', framing.length];
            else state = framing.kind === 'chunked' ? 'chunk-size' : 'close';
            break;
          }
          case 'length': {
            const take = Math.min(remaining, chunk.length - at);
            if (take > 0) read.body.push(chunk.subarray(at, at + take));
            at += take;
            remaining -= take;
            if (remaining === 0) state = 'done';
            break;
          }
          case 'close':
            read.body.push(chunk.subarray(at));
            at = chunk.length;
            break;
          case 'chunk-size': {
            const taken = takeLine(chunk, at);
            if (!taken) return read;
            at = taken.next;
            remaining = chunkSize(taken.line);
            state = remaining === 0 ? 'trailers' : 'chunk-data';
            break;
          }
          case 'chunk-data': {
            const take = Math.min(remaining, chunk.length - at);
            read.body.push(chunk.subarray(at, at + take));
            at += take;
            remaining -= take;
            if (remaining === 0) state = 'chunk-end';
            break;
          }
          case 'chunk-end': {
            const taken = takeLine(chunk, at);
            if (!taken) return read;
            if (taken.line !== '') throw new ResponseParseError('chunk data longer than its size');
            at = taken.next;
            state = 'chunk-size';
            break;
          }
          case 'trailers': {
            // Trailer fields are dropped (the client side frames the body anew).
            const taken = takeLine(chunk, at);
            if (!taken) return read;
            at = taken.next;
            if (taken.line === '') state = 'done';
            break;
          }
          case 'done':
            at = chunk.length;
            break;
        }
      }
      read.done = state === 'done';
      return read;
    },
    end() {
      if (state === 'close') state = 'done';
      return state === 'done';
    },
    lengthLeft: () => (state === 'length' ? remaining : undefined),
  };
}
