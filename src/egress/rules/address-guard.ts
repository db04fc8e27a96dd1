import { isIP } from 'node:net';

/**
 * What kind of destination an IP address is. Only `public` addresses are reachable
 * by default; every other class must be listed by the policy (an allow entry that is
 * the address, or a `resolve` override pinning the name to it), which is what stops
 * DNS rebinding into the host's own services, the LAN and cloud metadata endpoints.
 */
export type AddressClass =
  'public' | 'loopback' | 'private' | 'link-local' | 'cgnat' | 'metadata' | 'unspecified' | 'multicast' | 'reserved';

export interface AddressVerdict {
  /** Canonical form: dotted IPv4 (IPv4-mapped IPv6 unwrapped) or RFC 5952 IPv6. */
  address: string;
  class: AddressClass;
  allowed: boolean;
}

/**
 * The verdict on connecting to `ip`: allowed when public, or when `listed` says the
 * policy names this exact (canonical) address. Anything that is not an IP is refused.
 */
export function guardAddress(ip: string, listed: (canonical: string) => boolean): AddressVerdict {
  const address = canonicalAddress(ip);
  if (address === undefined) return { address: ip, class: 'reserved', allowed: false };
  const cls = classifyAddress(address);
  return { address, class: cls, allowed: cls === 'public' || listed(address) };
}

/** The class of an IPv4 or IPv6 address; anything unparseable is `reserved`. */
export function classifyAddress(ip: string): AddressClass {
  const v4 = parseIPv4(ip);
  if (v4) return classifyIPv4(v4);
  const v6 = parseIPv6(ip);
  return v6 ? classifyIPv6(v6) : 'reserved';
}

/**
 * One spelling per address, so rules, `resolve` targets and connected addresses
 * compare equal: `::ffff:127.0.0.1` becomes `127.0.0.1`, `0:0::1` becomes `::1`.
 * A zone (`fe80::1%eth0`) is kept. Undefined for anything that is not an IP.
 */
export function canonicalAddress(ip: string): string | undefined {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  if (isIP(bare) === 0) return undefined;
  const v4 = parseIPv4(bare);
  if (v4) return v4.join('.');
  const zoneAt = bare.indexOf('%');
  const zone = zoneAt === -1 ? '' : bare.slice(zoneAt).toLowerCase();
  const v6 = parseIPv6(bare);
  if (!v6) return undefined;
  const mapped = mappedIPv4(v6);
  if (mapped && zone === '') return mapped.join('.');
  return formatIPv6(v6) + zone;
}

type Bytes = readonly number[];

function parseIPv4(ip: string): Bytes | undefined {
  if (isIP(ip) !== 4) return undefined;
  return ip.split('.').map(Number);
}

/** 16 bytes, or undefined. Accepts `::`, embedded IPv4 tails and a `%zone`. */
function parseIPv6(ip: string): Bytes | undefined {
  const address = ip.split('%')[0] ?? '';
  if (isIP(address) !== 6) return undefined;
  let text = address;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = parseIPv4(last);
    if (!v4) return undefined;
    tail.push(...v4);
    text = text.slice(0, lastColon + 1) + '0:0';
  }
  const [head = '', rest] = text.split('::');
  const groups = (part: string | undefined): number[] =>
    part === undefined || part === '' ? [] : part.split(':').map((g) => parseInt(g, 16));
  const left = groups(head);
  const right = groups(rest);
  const fill = rest === undefined ? 0 : 8 - left.length - right.length;
  const words = [...left, ...new Array<number>(fill).fill(0), ...right];
  if (words.length !== 8) return undefined;
  const bytes = words.flatMap((w) => [w >> 8, w & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

function formatIPv6(bytes: Bytes): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // The longest run of two or more zero words becomes `::` (RFC 5952).
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** The IPv4 address inside `::ffff:a.b.c.d`, if that is what this is. */
function mappedIPv4(bytes: Bytes): Bytes | undefined {
  const prefix = bytes.slice(0, 12);
  const isMapped = prefix.slice(0, 10).every((b) => b === 0) && prefix[10] === 0xff && prefix[11] === 0xff;
  return isMapped ? bytes.slice(12) : undefined;
}

function inPrefix(bytes: Bytes, prefix: Bytes, bits: number): boolean {
  for (let i = 0; i < bits; i += 8) {
    const take = Math.min(8, bits - i);
    const mask = (0xff << (8 - take)) & 0xff;
    if (((bytes[i / 8] ?? 0) & mask) !== ((prefix[i / 8] ?? 0) & mask)) return false;
  }
  return true;
}

const V4_RULES: readonly [Bytes, number, AddressClass][] = [
  [[169, 254, 169, 254], 32, 'metadata'],
  [[0, 0, 0, 0], 8, 'unspecified'],
  [[127, 0, 0, 0], 8, 'loopback'],
  [[10, 0, 0, 0], 8, 'private'],
  [[172, 16, 0, 0], 12, 'private'],
  [[192, 168, 0, 0], 16, 'private'],
  [[100, 64, 0, 0], 10, 'cgnat'],
  [[169, 254, 0, 0], 16, 'link-local'],
  [[224, 0, 0, 0], 4, 'multicast'],
  [[240, 0, 0, 0], 4, 'reserved'], // includes 255.255.255.255
  [[192, 0, 0, 0], 24, 'reserved'], // IETF protocol assignments
  [[192, 0, 2, 0], 24, 'reserved'], // documentation
  [[198, 51, 100, 0], 24, 'reserved'],
  [[203, 0, 113, 0], 24, 'reserved'],
  [[198, 18, 0, 0], 15, 'reserved'], // benchmarking, used inside some networks
];

function classifyIPv4(bytes: Bytes): AddressClass {
  for (const [prefix, bits, cls] of V4_RULES) if (inPrefix(bytes, prefix, bits)) return cls;
  return 'public';
}

const FD00_EC2_254: Bytes = [0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54];

function classifyIPv6(bytes: Bytes): AddressClass {
  const zeroFirst = (n: number): boolean => bytes.slice(0, n).every((b) => b === 0);
  if (zeroFirst(16)) return 'unspecified';
  if (zeroFirst(15) && bytes[15] === 1) return 'loopback';
  const mapped = mappedIPv4(bytes);
  if (mapped) return classifyIPv4(mapped);
  if (zeroFirst(12)) return 'reserved'; // IPv4-compatible (deprecated)
  // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
  if (inPrefix(bytes, [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0], 96)) return classifyIPv4(bytes.slice(12));
  if (inPrefix(bytes, [0x20, 0x02], 16)) return classifyIPv4(bytes.slice(2, 6));
  if (bytes.every((b, i) => b === FD00_EC2_254[i])) return 'metadata';
  if (inPrefix(bytes, [0xff], 8)) return 'multicast';
  if (inPrefix(bytes, [0xfe, 0x80], 10)) return 'link-local';
  if (inPrefix(bytes, [0xfe, 0xc0], 10)) return 'private'; // site-local (deprecated)
  if (inPrefix(bytes, [0xfc], 7)) return 'private'; // unique local
  if (inPrefix(bytes, [0, 0x64, 0xff, 0x9b, 0, 1], 48)) return 'private'; // local-use NAT64
  if (inPrefix(bytes, [0x20, 0x01, 0x0d, 0xb8], 32)) return 'reserved'; // documentation
  if (inPrefix(bytes, [0x20, 0x01, 0, 0], 32)) return 'reserved'; // Teredo
  if (inPrefix(bytes, [0x20, 0x01, 0, 0], 23)) return 'reserved'; // IETF protocol assignments
  if (inPrefix(bytes, [0x01, 0, 0, 0, 0, 0, 0, 0], 64)) return 'reserved'; // discard
  // Only 2000::/3 is global unicast; everything else is not a place to connect to.
  return inPrefix(bytes, [0x20], 3) ? 'public' : 'reserved';
}
