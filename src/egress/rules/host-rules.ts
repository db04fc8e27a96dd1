import { ipFamily } from '../../_internal/ip-family.js';
import { AgentcellError } from '../../errors.js';
import { hostPatternProblem, splitHostPort } from '../../policy/host-pattern.js';
import { canonicalAddress } from './address-guard.js';

/** The `[network]` keys the gateway enforces; `policy.network` fits as it is. */
export interface HostRules {
  allow?: readonly string[];
  deny?: readonly string[];
  /** `{ name: IP }`, like curl's --resolve; the IP counts as listed for that name. */
  resolve?: Readonly<Record<string, string>>;
  /** network.mode = "learn": what the allow list lacks is reached and logged (see `learningMatcher`). */
  learn?: boolean;
}

/** `learned`: allowed only because the run is in learn mode; the allow list would have refused it. */
export type HostReason =
  'allow-rule' | 'learned' | 'deny-rule' | 'not-allowed' | 'cleartext-not-allowed' | 'invalid-host';

export interface HostDecision {
  decision: 'allow' | 'deny';
  /** The pattern that decided, as written in the policy; null when none matched. */
  rule: string | null;
  reason: HostReason;
}

export interface DecideOptions {
  /**
   * The traffic is cleartext HTTP (a forward-proxy request, or a tunnel whose first
   * bytes are an HTTP request line): only an allow entry that names the port
   * explicitly (`example.com:80`) allows it.
   */
  cleartext?: boolean;
}

export interface HostMatcher {
  /** Rules only, before any DNS: deny wins, then allow, else deny by default. */
  decide(host: string, port: number, options?: DecideOptions): HostDecision;
  /** A deny entry naming this address (and port) — checked on the address actually connected to. */
  denyForAddress(address: string, port: number): HostDecision | undefined;
  /**
   * Whether the policy lists `address` for this destination: an allow entry that is
   * the address (its port matching), or a `resolve` override pinning `name` to it.
   */
  listsAddress(address: string, port: number, name?: string): boolean;
  /** The `resolve` override for a name, canonical; undefined when there is none. */
  resolveOverride(name: string): string | undefined;
}

interface CompiledRule {
  pattern: string;
  kind: 'ip' | 'name' | 'wildcard';
  /** Canonical IP, lower-case name, or the suffix after `*.`. */
  host: string;
  port: number | undefined;
}

/**
 * Compiles allow/deny host patterns into a matcher. Semantics:
 * - `example.com` matches that name only; `*.example.com` matches every name below
 *   it (`a.example.com`, `a.b.example.com`) but not `example.com` itself: list both.
 *   The same holds for deny entries.
 * - IP entries (`10.0.0.5`, `[::1]:8443`) match that address only, in any spelling
 *   (`::ffff:10.0.0.5` is `10.0.0.5`); names never match IP targets and vice versa.
 * - No port means any port, for TLS and for other non-HTTP traffic (SSH on 22, SSH
 *   on 443). Cleartext HTTP needs an allow entry that names the port (`:80`).
 * - Deny wins over allow; nothing listed is denied.
 * Throws POLICY_INVALID on a pattern `hostPatternProblem` refuses or a bad resolve.
 */
export function compileHostRules(rules: HostRules): HostMatcher {
  const allow = (rules.allow ?? []).map(compileRule);
  const deny = (rules.deny ?? []).map(compileRule);
  const resolve = new Map<string, string>();
  for (const [name, ip] of Object.entries(rules.resolve ?? {})) {
    const host = normalizeHost(name);
    const address = canonicalAddress(ip);
    if (host === undefined || ipFamily(host) !== 0)
      throw new AgentcellError('POLICY_INVALID', `network.resolve: "${name}" is not a host name`);
    if (address === undefined)
      throw new AgentcellError('POLICY_INVALID', `network.resolve."${name}": "${ip}" is not an IP address`);
    resolve.set(host, address);
  }

  const matching = (list: CompiledRule[], host: string, port: number): CompiledRule[] =>
    list.filter((rule) => (rule.port === undefined || rule.port === port) && hostMatches(rule, host));

  return {
    decide(rawHost, port, options = {}) {
      const host = normalizeHost(rawHost);
      if (host === undefined || !validPort(port)) return { decision: 'deny', rule: null, reason: 'invalid-host' };
      const denied = matching(deny, host, port)[0];
      if (denied) return { decision: 'deny', rule: denied.pattern, reason: 'deny-rule' };
      const allowed = matching(allow, host, port);
      const first = allowed[0];
      if (!first) return { decision: 'deny', rule: null, reason: 'not-allowed' };
      if (!options.cleartext) return { decision: 'allow', rule: first.pattern, reason: 'allow-rule' };
      const explicit = allowed.find((rule) => rule.port !== undefined);
      return explicit
        ? { decision: 'allow', rule: explicit.pattern, reason: 'allow-rule' }
        : { decision: 'deny', rule: first.pattern, reason: 'cleartext-not-allowed' };
    },
    denyForAddress(address, port) {
      const canonical = canonicalAddress(address);
      if (canonical === undefined) return { decision: 'deny', rule: null, reason: 'invalid-host' };
      const denied = matching(deny, canonical, port)[0];
      return denied ? { decision: 'deny', rule: denied.pattern, reason: 'deny-rule' } : undefined;
    },
    listsAddress(address, port, name) {
      const canonical = canonicalAddress(address);
      if (canonical === undefined) return false;
      const pinnedName = name === undefined ? undefined : normalizeHost(name);
      if (pinnedName !== undefined && resolve.get(pinnedName) === canonical) return true;
      return allow.some((rule) => rule.kind === 'ip' && rule.host === canonical && portMatches(rule, port));
    },
    resolveOverride(name) {
      const host = normalizeHost(name);
      return host === undefined ? undefined : resolve.get(host);
    },
  };
}

/**
 * Learn mode: allows what `allowlist` refuses only for lack of an allow entry
 * (`not-allowed`, `cleartext-not-allowed`), as `learned`. Everything else is decided by
 * `allowlist` unchanged: deny entries and invalid hosts still refuse, and the address
 * guard (which only `listsAddress` feeds) still keeps loopback, private, link-local and
 * metadata addresses out unless the policy lists them, so learning never opens the host
 * or the LAN to the cell.
 */
export function learningMatcher(allowlist: HostMatcher): HostMatcher {
  return {
    ...allowlist,
    decide(host, port, options) {
      const decision = allowlist.decide(host, port, options);
      const learnable = decision.reason === 'not-allowed' || decision.reason === 'cleartext-not-allowed';
      return learnable ? { decision: 'allow', rule: null, reason: 'learned' } : decision;
    },
  };
}

/**
 * Lower-case, without brackets or one trailing dot; IPs in canonical form. Undefined
 * for anything that is not a plausible host name or IP (spaces, slashes, NULs, empty
 * labels), so no crafted string can line up with a suffix rule.
 */
export function normalizeHost(raw: string): string | undefined {
  const bracketed = raw.startsWith('[') && raw.endsWith(']');
  const text = bracketed ? raw.slice(1, -1) : raw;
  const ip = canonicalAddress(text);
  if (ip !== undefined) return ip;
  if (bracketed) return undefined;
  const name = (text.endsWith('.') ? text.slice(0, -1) : text).toLowerCase();
  if (name.length === 0 || name.length > 253) return undefined;
  return /^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$/.test(name) ? name : undefined;
}

function compileRule(pattern: string): CompiledRule {
  const problem = hostPatternProblem(pattern);
  if (problem) throw new AgentcellError('POLICY_INVALID', `network host pattern "${pattern}": ${problem}`);
  const { host, port } = splitHostPort(pattern);
  const portNumber = port === undefined ? undefined : Number(port);
  const address = canonicalAddress(host);
  if (address !== undefined) return { pattern, kind: 'ip', host: address, port: portNumber };
  const lower = host.toLowerCase().replace(/\.$/, '');
  if (lower.startsWith('*.')) return { pattern, kind: 'wildcard', host: lower.slice(2), port: portNumber };
  return { pattern, kind: 'name', host: lower, port: portNumber };
}

function hostMatches(rule: CompiledRule, host: string): boolean {
  switch (rule.kind) {
    case 'ip':
      return rule.host === host;
    case 'name':
      return rule.host === host;
    case 'wildcard':
      return ipFamily(host) === 0 && host.endsWith(`.${rule.host}`);
  }
}

function portMatches(rule: CompiledRule, port: number): boolean {
  return rule.port === undefined || rule.port === port;
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}
