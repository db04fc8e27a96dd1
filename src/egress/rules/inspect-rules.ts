import { compileHostRules, type HostMatcher } from './host-rules.js';

/** One `[[network.rule]]`: which methods and paths an inspected host may be sent. */
export interface RequestRule {
  host: string;
  /** Upper-case methods; absent: any method. */
  methods?: readonly string[];
  /** Exact paths, `*` matching any run of characters (`/` included); absent: any path. */
  paths?: readonly string[];
}

/** The `[network]` keys about inspection; `policy.network` fits as it is. */
export interface InspectRules {
  /** Host patterns whose TLS the gateway terminates. */
  inspect?: readonly string[];
  /** L7 rules; a rule's host is inspected too (a rule that can't be enforced is never silently ignored). */
  rule?: readonly RequestRule[];
}

/** A `[secrets.NAME]` with `inject = "proxy"`, its value read on the host and the template applied. */
export interface ProxySecret {
  name: string;
  /** Host pattern that gets the header (implicitly inspected). */
  host: string;
  header: string;
  /** The whole header value (`template` with `{value}` replaced); never logged. */
  headerValue: string;
  /** The raw secret, to redact from anything written (spy log). */
  value: string;
}

export type RequestDecision =
  | { allowed: true; rule: string | null }
  | { allowed: false; reason: 'no-matching-rule' | 'bad-request'; rule: string | null; detail: string };

export interface InspectMatcher {
  /** Whether the gateway terminates TLS for this destination. */
  inspects(host: string, port: number): boolean;
  /** The L7 decision for one request (method upper-case, path without the query). */
  decideRequest(host: string, port: number, method: string, path: string): RequestDecision;
  /** The headers to add for this destination (only the secret's own host gets it). */
  injections(host: string, port: number): readonly ProxySecret[];
}

interface CompiledRequestRule {
  hosts: HostMatcher;
  label: string;
  methods: Set<string> | undefined;
  paths: RegExp[] | undefined;
}

/** Compiles inspect patterns, request rules and proxy secrets; throws POLICY_INVALID on a bad host pattern. */
export function compileInspectRules(rules: InspectRules, secrets: readonly ProxySecret[] = []): InspectMatcher {
  const requestRules: CompiledRequestRule[] = (rules.rule ?? []).map((rule) => ({
    hosts: single(rule.host),
    label: ruleLabel(rule),
    methods: rule.methods ? new Set(rule.methods.map((m) => m.toUpperCase())) : undefined,
    paths: rule.paths?.map(pathPattern),
  }));
  const secretHosts = secrets.map((secret) => ({ secret, hosts: single(secret.host) }));
  const inspected = single(
    ...(rules.inspect ?? []),
    ...(rules.rule ?? []).map((r) => r.host),
    ...secrets.map((s) => s.host),
  );
  const covers = (matcher: HostMatcher, host: string, port: number): boolean =>
    matcher.decide(host, port).decision === 'allow';

  return {
    inspects: (host, port) => covers(inspected, host, port),
    decideRequest(host, port, method, path) {
      const applicable = requestRules.filter((rule) => covers(rule.hosts, host, port));
      if (applicable.length === 0) return { allowed: true, rule: null };
      if (hasDotSegment(path))
        return { allowed: false, reason: 'bad-request', rule: null, detail: `a path with dot segments (${path})` };
      const upper = method.toUpperCase();
      const match = applicable.find(
        (rule) =>
          (rule.methods === undefined || rule.methods.has(upper)) &&
          (rule.paths === undefined || rule.paths.some((pattern) => pattern.test(path))),
      );
      if (match) return { allowed: true, rule: match.label };
      return { allowed: false, reason: 'no-matching-rule', rule: null, detail: `${upper} ${path}` };
    },
    injections: (host, port) =>
      secretHosts.filter(({ hosts }) => covers(hosts, host, port)).map(({ secret }) => secret),
  };
}

/** A matcher that "allows" exactly the given patterns, reusing the gateway's host semantics. */
function single(...patterns: string[]): HostMatcher {
  return compileHostRules({ allow: patterns });
}

function ruleLabel(rule: RequestRule): string {
  const methods = rule.methods?.join(',') ?? '*';
  const paths = rule.paths?.join(',') ?? '*';
  return `${rule.host} ${methods} ${paths}`;
}

function pathPattern(pattern: string): RegExp {
  const source = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${source}$`, 's');
}

/**
 * `.`/`..` segments, also percent-encoded or behind an encoded slash: a server that
 * normalizes them would serve another path than the one the rules saw.
 */
function hasDotSegment(path: string): boolean {
  let decoded = path;
  for (let i = 0; i < 3; i++) {
    try {
      const next = decodeURIComponent(decoded);
      if (next === decoded) break;
      decoded = next;
    } catch {
      return true;
    }
  }
  return /(^|[/\\])\.\.?([/\\]|$)/.test(decoded);
}
