import { isIP } from 'node:net';

/**
 * node:net's `isIP`, answered without it for a host name: `isIP`'s first call in a process
 * costs 8–10 ms (V8 compiles its large IPv6 pattern on first use), on the path of every run
 * whose policy names a host. An IPv4 address is four dotted decimals and an IPv6 one holds at
 * least two colons, so a string with neither shape is not an address (0); the rest is left to
 * `isIP`.
 */
export function ipFamily(host: string): 0 | 4 | 6 {
  // No colon, or one (`host:port`): not IPv6, whose shortest form is `::`.
  if (host.indexOf(':') === host.lastIndexOf(':') && !/^[\d.]+$/.test(host)) return 0;
  const family = isIP(host);
  return family === 4 || family === 6 ? family : 0;
}
