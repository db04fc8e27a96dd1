import type { FrameParse } from '../stream/read-frame.js';

/** SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), CONNECT only. */
export const SOCKS_VERSION = 0x05;
export const METHOD_USER_PASSWORD = 0x02;
export const METHOD_NONE_ACCEPTABLE = 0xff;
export const COMMAND_CONNECT = 0x01;

export type SocksReplyCode =
  | 0x00 // succeeded
  | 0x01 // general failure
  | 0x02 // connection not allowed by ruleset
  | 0x04 // host unreachable
  | 0x05 // connection refused
  | 0x07 // command not supported
  | 0x08; // address type not supported

export interface SocksRequest {
  command: number;
  /** A name, or an IP literal for address types 1 and 4; undefined for unknown types. */
  host: string | undefined;
  port: number;
}

export function parseGreeting(data: Buffer): FrameParse<number[]> {
  if (data.length < 2) return 'more';
  if (data[0] !== SOCKS_VERSION) return 'invalid';
  const count = data.readUInt8(1);
  if (data.length < 2 + count) return 'more';
  return { value: [...data.subarray(2, 2 + count)], used: 2 + count };
}

export function parseUserPassword(data: Buffer): FrameParse<{ user: string; password: string }> {
  if (data.length < 2) return 'more';
  if (data[0] !== 0x01) return 'invalid';
  const userLength = data.readUInt8(1);
  if (data.length < 2 + userLength + 1) return 'more';
  const passwordLength = data.readUInt8(2 + userLength);
  const end = 3 + userLength + passwordLength;
  if (data.length < end) return 'more';
  return {
    value: {
      user: data.subarray(2, 2 + userLength).toString('utf8'),
      password: data.subarray(3 + userLength, end).toString('utf8'),
    },
    used: end,
  };
}

export function parseRequest(data: Buffer): FrameParse<SocksRequest> {
  if (data.length < 5) return 'more';
  if (data[0] !== SOCKS_VERSION || data[2] !== 0x00) return 'invalid';
  const command = data.readUInt8(1);
  const type = data.readUInt8(3);
  let addressEnd: number;
  let host: string | undefined;
  switch (type) {
    case 0x01:
      addressEnd = 4 + 4;
      if (data.length < addressEnd + 2) return 'more';
      host = [...data.subarray(4, 8)].join('.');
      break;
    case 0x03: {
      const length = data.readUInt8(4);
      addressEnd = 5 + length;
      if (data.length < addressEnd + 2) return 'more';
      host = data.subarray(5, addressEnd).toString('latin1');
      break;
    }
    case 0x04: {
      addressEnd = 4 + 16;
      if (data.length < addressEnd + 2) return 'more';
      const words: string[] = [];
      for (let i = 4; i < addressEnd; i += 2) words.push(data.readUInt16BE(i).toString(16));
      host = words.join(':');
      break;
    }
    default:
      // Unknown address type: its length is unknowable, so nothing after it is usable.
      return { value: { command, host: undefined, port: 0 }, used: data.length };
  }
  return { value: { command, host, port: data.readUInt16BE(addressEnd) }, used: addressEnd + 2 };
}

/** A reply with an unspecified bound address (0.0.0.0:0); clients ignore it for CONNECT. */
export function socksReply(code: SocksReplyCode): Buffer {
  return Buffer.from([SOCKS_VERSION, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
}
