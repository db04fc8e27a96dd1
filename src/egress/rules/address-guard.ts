import { BlockList, SocketAddress } from 'node:net';
import { ipFamily } from '../../_internal/ip-family.js';

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

type Subnet = readonly [network: string, prefix: number];

/**
 * The classes, in the order they are tried (the first that holds the address wins, so
 * 169.254.169.254 is `metadata`, not `link-local`). IPv4 subnets are also entered in
 * their IPv6 spellings (below), IPv6 ones as they are.
 */
const CLASSES: readonly { class: AddressClass; ipv4: readonly Subnet[]; ipv6: readonly Subnet[] }[] = [
  {
    class: 'metadata',
    // AWS/GCP/Azure/OCI, Alibaba Cloud; AWS over IPv6.
    ipv4: [
      ['169.254.169.254', 32],
      ['100.100.100.200', 32],
    ],
    ipv6: [['fd00:ec2::254', 128]],
  },
  { class: 'unspecified', ipv4: [['0.0.0.0', 8]], ipv6: [['::', 128]] },
  { class: 'loopback', ipv4: [['127.0.0.0', 8]], ipv6: [['::1', 128]] },
  {
    class: 'private',
    ipv4: [
      ['10.0.0.0', 8],
      ['172.16.0.0', 12],
      ['192.168.0.0', 16],
    ],
    ipv6: [
      ['fc00::', 7], // unique local
      ['fec0::', 10], // site-local (deprecated)
      ['64:ff9b:1::', 48], // local-use NAT64
    ],
  },
  { class: 'cgnat', ipv4: [['100.64.0.0', 10]], ipv6: [] },
  { class: 'link-local', ipv4: [['169.254.0.0', 16]], ipv6: [['fe80::', 10]] },
  { class: 'multicast', ipv4: [['224.0.0.0', 4]], ipv6: [['ff00::', 8]] },
  {
    class: 'reserved',
    ipv4: [
      ['240.0.0.0', 4], // includes 255.255.255.255
      ['192.0.0.0', 24], // IETF protocol assignments
      ['192.0.2.0', 24], // documentation
      ['198.51.100.0', 24],
      ['203.0.113.0', 24],
      ['198.18.0.0', 15], // benchmarking, used inside some networks
      ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
    ],
    ipv6: [
      ['::', 96], // IPv4-compatible (deprecated)
      ['2001:db8::', 32], // documentation
      ['3fff::', 20], // documentation (RFC 9637)
      ['2001::', 23], // IETF protocol assignments, Teredo (2001::/32) among them
      ['100::', 64], // discard
    ],
  },
  {
    // Global unicast is 2000::/3; NAT64 of an IPv4 address none of the above holds is public too.
    class: 'public',
    ipv4: [],
    ipv6: [
      ['2000::', 3],
      ['64:ff9b::', 96],
    ],
  },
];

/**
 * Each class as a `net.BlockList`. A BlockList matches an IPv4-mapped IPv6 address
 * (`::ffff:127.0.0.1`) against IPv4 subnets itself; the prefixes that reach an IPv4
 * address by other means are entered here for each IPv4 subnet: NAT64 (64:ff9b::/96)
 * and 6to4 (2002::/16), so `64:ff9b::7f00:1` is as much loopback as `127.0.0.1`.
 * Built at the first classification, not when the module loads: every `run` loads it, and
 * only the gateway classifies (building them is most of a cell-less run's egress cost).
 */
let lists: readonly (readonly [AddressClass, BlockList])[] | undefined;
function classLists(): readonly (readonly [AddressClass, BlockList])[] {
  lists ??= CLASSES.map((entry) => {
    const list = new BlockList();
    for (const [network, prefix] of entry.ipv4) {
      list.addSubnet(network, prefix, 'ipv4');
      list.addSubnet(`64:ff9b::${network}`, 96 + prefix, 'ipv6');
      list.addSubnet(sixToFour(network), 16 + prefix, 'ipv6');
    }
    for (const [network, prefix] of entry.ipv6) list.addSubnet(network, prefix, 'ipv6');
    return [entry.class, list] as const;
  });
  return lists;
}

/** `2002:AABB:CCDD::` for `A.B.C.D`: the 6to4 prefix that embeds an IPv4 network. */
function sixToFour(ipv4: string): string {
  const hex = ipv4.split('.').map((byte) => Number(byte).toString(16).padStart(2, '0'));
  return `2002:${hex.slice(0, 2).join('')}:${hex.slice(2).join('')}::`;
}

/**
 * The class of an IPv4 or IPv6 address; anything unparseable is `reserved`. An IPv4
 * address no class holds is public; an IPv6 one is public only inside 2000::/3 (or
 * NAT64 of a public IPv4 address): anything else is no place to connect to.
 */
export function classifyAddress(ip: string): AddressClass {
  // Canonical first: an IPv4-mapped address is judged as the IPv4 address it is.
  const address = canonicalAddress(ip)?.split('%')[0];
  if (address === undefined) return 'reserved';
  const family = ipFamily(address);
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const [cls, list] of classLists()) if (list.check(address, type)) return cls;
  return family === 4 ? 'public' : 'reserved';
}

/**
 * One spelling per address, so rules, `resolve` targets and connected addresses
 * compare equal: `::ffff:127.0.0.1` becomes `127.0.0.1`, `0:0::1` becomes `::1`
 * (node's inet_ntop, RFC 5952). A zone (`fe80::1%eth0`) is kept, lower-cased.
 * Undefined for anything that is not an IP.
 */
export function canonicalAddress(ip: string): string | undefined {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  const zoneAt = bare.indexOf('%');
  const address = zoneAt === -1 ? bare : bare.slice(0, zoneAt);
  const zone = zoneAt === -1 ? '' : bare.slice(zoneAt).toLowerCase();
  const family = ipFamily(address);
  if (family === 0 || (family === 4 && zone !== '')) return undefined;
  const canonical = new SocketAddress({ address, family: family === 4 ? 'ipv4' : 'ipv6' }).address;
  // inet_ntop writes an IPv4-mapped address as ::ffff:a.b.c.d: the IPv4 address is its one spelling.
  const mapped = canonical.startsWith('::ffff:') ? canonical.slice('::ffff:'.length) : undefined;
  if (mapped !== undefined && ipFamily(mapped) === 4 && zone === '') return mapped;
  return canonical + zone;
}
