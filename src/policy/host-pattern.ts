import { ipFamily } from '../_internal/ip-family.js';

/**
 * A network rule target: `example.com`, `*.example.com`, `example.com:443`,
 * `10.0.0.5`, `[::1]:8443`. Returns why a pattern is unacceptable, or undefined.
 * Bare `*` and wildcards over a public suffix (`*.com`) are refused: they are an
 * open network spelled as an allowlist.
 */
export function hostPatternProblem(pattern: string): string | undefined {
  if (pattern.trim() === '') return 'empty host: name a host, e.g. api.example.com or *.example.com:443';
  const url = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(pattern);
  if (url) return `give a host name, not a URL: did you mean ${suggestHost(url[1] ?? '')}?`;
  const slash = pattern.indexOf('/');
  if (slash > 0) return `give a host name, not a path: did you mean ${suggestHost(pattern.slice(0, slash))}?`;
  const { host, port } = splitHostPort(pattern);
  if (port !== undefined && !/^\d{1,5}$/.test(port)) return `port "${port}" is not a number`;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return `port ${port} is out of range`;
  if (ipFamily(host)) return undefined;
  if (host === '*' || host === '') return 'a bare wildcard allows every host; list hosts instead';
  const wildcard = host.startsWith('*.');
  const name = wildcard ? host.slice(2) : host;
  if (!/^[a-z0-9-]+(\.[a-z0-9-]+)*$/i.test(name)) return `"${host}" is not a host name, *.domain or IP address`;
  if (wildcard && !name.includes('.')) return `"${host}" covers a whole top-level domain; name a domain under it`;
  return undefined;
}

export function splitHostPort(pattern: string): { host: string; port?: string } {
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(pattern);
  if (bracketed)
    return bracketed[2] === undefined ? { host: bracketed[1] ?? '' } : { host: bracketed[1] ?? '', port: bracketed[2] };
  if (ipFamily(pattern) === 6) return { host: pattern };
  const colon = pattern.lastIndexOf(':');
  if (colon === -1) return { host: pattern };
  return { host: pattern.slice(0, colon), port: pattern.slice(colon + 1) };
}

/** The host[:port] of a URL's authority, without any user info. */
function suggestHost(authority: string): string {
  return authority.slice(authority.lastIndexOf('@') + 1) || 'the host name alone';
}
