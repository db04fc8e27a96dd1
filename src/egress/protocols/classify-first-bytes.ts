import type { Socket } from 'node:net';
import { ipFamily } from '../../_internal/ip-family.js';
import { normalizeHost } from '../rules/host-rules.js';
import { readFrame } from '../stream/read-frame.js';

/**
 * What the first bytes a client sends into a tunnel say about it:
 * - `tls`: a complete ClientHello, with its SNI host name when it carries one;
 * - `tls-unreadable`: starts like a TLS handshake record but is no ClientHello this
 *   parser can read (malformed, two server names, …). Refused: a TLS stack upstream
 *   might read a server name out of it that this parser did not check;
 * - `http`: a cleartext HTTP request line (`GET /path HTTP/1.1`), after the empty
 *   lines servers skip;
 * - `other`: anything else (SSH, a database protocol, …);
 * - `more`: not enough bytes yet to tell.
 */
export type FirstBytes =
  | { kind: 'tls'; sni: string | undefined }
  | { kind: 'tls-unreadable' }
  | { kind: 'http'; method: string }
  | { kind: 'other' }
  | { kind: 'more' };

/** Beyond this, a ClientHello or request line is not going to complete. */
export const FIRST_BYTES_LIMIT = 64 * 1024;

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXTENSION_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST_NAME = 0x00;
const UNREADABLE: FirstBytes = { kind: 'tls-unreadable' };

/** Classifies the bytes a client sent first; pure, call again with more bytes on `more`. */
export function classifyFirstBytes(data: Buffer): FirstBytes {
  if (data.length === 0) return { kind: 'more' };
  if (data[0] === RECORD_HANDSHAKE) return classifyTls(data);
  return classifyText(data);
}

function classifyText(data: Buffer): FirstBytes {
  // RFC 9112 §2.2: servers skip empty lines before the request line, so we do too.
  let start = 0;
  while (start < data.length && (data[start] === 0x0d || data[start] === 0x0a)) start++;
  if (start === data.length) return data.length >= 1024 ? { kind: 'other' } : { kind: 'more' };
  // An HTTP method is upper-case letters followed by a space; `SSH-2.0-…` is not.
  let end = start;
  while (end < data.length && end - start < 20) {
    const c = data[end] ?? 0;
    if (c >= 0x41 && c <= 0x5a) end++;
    else break;
  }
  if (end === data.length && end - start < 20) return { kind: 'more' };
  if (end > start && data[end] === 0x20) return { kind: 'http', method: data.subarray(start, end).toString('latin1') };
  return { kind: 'other' };
}

function classifyTls(data: Buffer): FirstBytes {
  // Gather handshake bytes from consecutive handshake records: a ClientHello may be
  // fragmented over several (large post-quantum key shares make that more likely).
  const handshake: Buffer[] = [];
  let have = 0;
  let offset = 0;
  let needed: number | undefined;
  while (needed === undefined || have < needed) {
    if (offset + 5 > data.length) return moreOrUnreadable(data);
    if (data[offset] !== RECORD_HANDSHAKE || data[offset + 1] !== 0x03) return UNREADABLE;
    const length = data.readUInt16BE(offset + 3);
    if (length === 0 || length > 16384 + 2048) return UNREADABLE;
    if (offset + 5 + length > data.length) {
      // Partial record: usable if the part we have already holds the whole message.
      handshake.push(data.subarray(offset + 5));
      have += data.length - offset - 5;
      needed ??= handshakeLength(Buffer.concat(handshake));
      if (needed !== undefined && have >= needed) break;
      return moreOrUnreadable(data);
    }
    handshake.push(data.subarray(offset + 5, offset + 5 + length));
    have += length;
    offset += 5 + length;
    needed ??= handshakeLength(Buffer.concat(handshake));
    if (needed === undefined && have >= 4) return UNREADABLE;
  }
  const message = Buffer.concat(handshake);
  if (message[0] !== HANDSHAKE_CLIENT_HELLO) return UNREADABLE;
  const sni = serverName(message.subarray(4, needed));
  return sni === null ? UNREADABLE : { kind: 'tls', sni };
}

function moreOrUnreadable(data: Buffer): FirstBytes {
  return data.length >= FIRST_BYTES_LIMIT ? UNREADABLE : { kind: 'more' };
}

/** Total bytes of the first handshake message (header included), if it is a ClientHello. */
function handshakeLength(message: Buffer): number | undefined {
  if (message.length < 4 || message[0] !== HANDSHAKE_CLIENT_HELLO) return undefined;
  return 4 + message.readUIntBE(1, 3);
}

/**
 * The host_name in a ClientHello body: a string, undefined when there is no SNI
 * extension, or null when the body is malformed.
 */
function serverName(body: Buffer): string | undefined | null {
  const reader = new Reader(body);
  if (!reader.skip(2 + 32)) return null; // legacy_version, random
  if (!reader.skipVector(1)) return null; // session id
  if (!reader.skipVector(2)) return null; // cipher suites
  if (!reader.skipVector(1)) return null; // compression methods
  if (reader.remaining() === 0) return undefined; // no extensions at all
  const extensions = reader.vector(2);
  if (!extensions) return null;
  let sni: string | undefined;
  while (extensions.remaining() > 0) {
    const type = extensions.uint(2);
    const data = extensions.vector(2);
    if (type === undefined || !data) return null;
    if (type !== EXTENSION_SERVER_NAME) continue;
    if (sni !== undefined) return null; // duplicate extension
    const list = data.vector(2);
    if (!list) return null;
    while (list.remaining() > 0) {
      const nameType = list.uint(1);
      const name = list.vector(2);
      if (nameType === undefined || !name) return null;
      if (nameType !== NAME_TYPE_HOST_NAME) continue;
      if (sni !== undefined) return null; // two host names: ambiguous, refuse
      sni = name.rest().toString('latin1');
    }
  }
  return sni;
}

class Reader {
  private offset = 0;
  constructor(private readonly buffer: Buffer) {}

  remaining(): number {
    return this.buffer.length - this.offset;
  }

  skip(n: number): boolean {
    if (this.remaining() < n) return false;
    this.offset += n;
    return true;
  }

  uint(bytes: 1 | 2 | 3): number | undefined {
    if (this.remaining() < bytes) return undefined;
    const value = this.buffer.readUIntBE(this.offset, bytes);
    this.offset += bytes;
    return value;
  }

  vector(lengthBytes: 1 | 2 | 3): Reader | undefined {
    const length = this.uint(lengthBytes);
    if (length === undefined || this.remaining() < length) return undefined;
    const inner = new Reader(this.buffer.subarray(this.offset, this.offset + length));
    this.offset += length;
    return inner;
  }

  skipVector(lengthBytes: 1 | 2 | 3): boolean {
    return this.vector(lengthBytes) !== undefined;
  }

  rest(): Buffer {
    const out = this.buffer.subarray(this.offset);
    this.offset = this.buffer.length;
    return out;
  }
}

/** Reads a tunnel client's first bytes (after `initial`) until they can be classified. */
export function readFirstBytes(client: Socket, initial: Buffer): Promise<{ value: FirstBytes; rest: Buffer }> {
  return readFrame(
    client,
    initial,
    (data) => {
      const first = classifyFirstBytes(data);
      return first.kind === 'more' ? 'more' : { value: first, used: 0 };
    },
    FIRST_BYTES_LIMIT,
  );
}

/**
 * Why a ClientHello doesn't fit a tunnel to `host` (normalized), or undefined when it does:
 * its SNI must name the host (ignoring case); no SNI is accepted only for an IP target.
 */
export function sniRefusal(sni: string | undefined, host: string): 'sni-missing' | 'sni-mismatch' | undefined {
  if (sni === undefined) return ipFamily(host) === 0 ? 'sni-missing' : undefined;
  return normalizeHost(sni) === host ? undefined : 'sni-mismatch';
}
