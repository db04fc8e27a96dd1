import type { Socket } from 'node:net';
import { AgentcellError } from '../../errors.js';
import { createEgressLog, type EgressCounters, type EgressEvent, type EgressKind } from '../log/egress-log.js';
import { createSpyLog, redactSecrets, type SpyLog } from '../log/spy-log.js';
import { endRefused, rawDenyResponse, type Denial } from '../protocols/deny-response.js';
import type { InspectContext } from '../protocols/inspect/inspect-context.js';
import { inspectTunnel } from '../protocols/inspect/inspect-tunnel.js';
import { spliceTunnel, type OpenTunnel, type TunnelHooks, type TunnelTarget } from '../protocols/splice-tunnel.js';
import { guardAddress } from '../rules/address-guard.js';
import { compileHostRules, learningMatcher, normalizeHost, type HostMatcher } from '../rules/host-rules.js';
import { compileInspectRules, type InspectMatcher, type InspectRules } from '../rules/inspect-rules.js';
import { createPooledReads, type PooledReads } from '../stream/pooled-reads.js';
import type { EgressGatewayOptions, GatewayInspectOptions, GatewayRules } from './egress-gateway.js';
import { upstreamTrust, type UpstreamTrust } from './upstream-trust.js';
import { openDestination, systemLookup, type DestinationRequest, type DestinationResult } from './open-destination.js';
import { checkCredentials, checkProxyAuthorization } from './proxy-auth.js';

/** A connection's decision, before the gateway stamps it with time, cell, run and kind. */
export type Outcome = Pick<EgressEvent, 'host' | 'port' | 'address' | 'decision' | 'rule' | 'reason'> &
  Partial<Pick<EgressEvent, 'bytesUp' | 'bytesDown' | 'method' | 'path' | 'status' | 'injected'>> & {
    revoked?: boolean;
    inspected?: boolean;
    kernelRelay?: boolean;
    /** The traffic was cleartext HTTP (what the allow list needs an explicit port for). */
    cleartext?: boolean;
  };

/** A checked, connected upstream for a CONNECT or SOCKS tunnel, and how its reads are buffered. */
export type TunnelDestination = Extract<DestinationResult, { ok: true }> & { reads: PooledReads | undefined };

/**
 * What every protocol handler shares: the rules in force (a reload swaps them), the
 * token check, the checked way to a destination, the log, and the open tunnels a reload
 * may revoke. One per gateway; it owns that state.
 */
export interface GatewayContext {
  /** Why a `Proxy-Authorization` header is refused, or undefined when it carries the token. */
  authFailure(header: string | undefined): 'proxy-auth-required' | 'proxy-auth-invalid' | undefined;
  /** SOCKS5 user/password against the token. */
  credentialsValid(user: string, password: string): boolean;
  /** The host rules in force now. */
  matcher(): HostMatcher;
  /** Whether `host:port` is inspected under the rules in force now. */
  inspects(host: string, port: number): boolean;
  /** Rules → resolve → address guard → connect; refused while the gateway is not listening. */
  destination(request: DestinationRequest): Promise<DestinationResult>;
  /** `destination` for a tunnel: a spliced one's upstream reads into pooled buffers. */
  tunnelDestination(host: string, port: number): Promise<TunnelDestination | Extract<DestinationResult, { ok: false }>>;
  /** Splices the client to its upstream, or terminates its TLS when the destination is inspected. */
  joinTunnel(
    client: Socket,
    head: Buffer,
    kind: EgressKind,
    destination: TunnelDestination,
    started: number,
  ): Promise<void>;
  /** Keeps a forward request where a reload can revoke it; returns its removal. */
  holdOpen(tunnel: OpenTunnel): () => void;
  /** Writes one decision line, stamped with time (`started`), cell, run and kind. */
  record(kind: EgressKind, started: number, outcome: Outcome): void;
  /** Logs a refusal and ends the client with the raw 403/407/502. */
  refuseRaw(kind: EgressKind, client: Socket, denial: Denial, started: number, address?: string | null): void;
}

/** The context plus what only the gateway's lifecycle uses. */
export interface GatewayState extends GatewayContext {
  /** Accepted sockets that read into pooled buffers (all of them, unless node no longer allows it). */
  readonly clientReads: WeakMap<Socket, PooledReads>;
  openLogs(): Promise<void>;
  closeLogs(): Promise<void>;
  /** Destroys every upstream socket (a closing gateway). */
  destroyUpstreams(): void;
  reload(rules: GatewayRules): { revoked: number };
  counters(): EgressCounters;
  /** Builds the upstream trust of inspected connections (EgressGateway.warmUp). */
  warmUp(options?: WarmUpOptions): void;
}

export interface WarmUpOptions {
  /** Begins once the gateway has refused this host (the canaries' probe), not now. */
  afterRefusing?: string;
}

/**
 * The state a gateway's handlers share. `listening` says whether new destinations may
 * still be opened; `failClosed` is told when the log can't be written.
 */
export function createGatewayContext(
  options: EgressGatewayOptions,
  lifecycle: { listening: () => boolean; closing: () => boolean; failClosed: (error: Error) => void },
): GatewayState {
  // Learn mode decides with `matcher` and logs what `allowlist` alone would have decided.
  let allowlist: HostMatcher = compileHostRules(options.rules);
  let learn = options.rules.learn === true;
  let matcher: HostMatcher = learn ? learningMatcher(allowlist) : allowlist;
  const secrets = options.inspect?.secrets ?? [];
  let inspectRules: InspectRules = { inspect: options.rules.inspect ?? [], rule: options.rules.rule ?? [] };
  let inspection: InspectMatcher = compileInspection(inspectRules, options.inspect);
  const redactions = secrets.flatMap((s) => [
    { name: s.name, value: s.headerValue },
    { name: s.name, value: s.value },
  ]);
  const spy: SpyLog | undefined =
    options.inspect?.spyLogPath === undefined
      ? undefined
      : createSpyLog({
          path: options.inspect.spyLogPath,
          cell: options.cell ?? '',
          run: options.run ?? '',
          secrets: redactions,
        });
  const lookup = options.lookup ?? systemLookup;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  const log = createEgressLog({ path: options.logPath, onEvent: options.onEvent, onError: lifecycle.failClosed });
  const upstreams = new Set<Socket>();
  const tunnels = new Set<OpenTunnel>();
  const inspectedTunnels = new WeakSet<OpenTunnel>();
  const clientReads = new WeakMap<Socket, PooledReads>();
  let upstream: UpstreamTrust | undefined;
  let warmUpAfter: string | undefined;

  function startWarmUp(): void {
    const inspect = options.inspect;
    if (!inspect) return;
    inspect.leaves.warmUp?.();
    const trust = upstreamOf(inspect);
    // A step per turn of the event loop: the cell's connections are served in between. A
    // closing gateway stops (a short command can end before the store is built, and the
    // process would otherwise stay up to finish it).
    const step = (): void => {
      if (lifecycle.closing()) return;
      try {
        if (!trust.step()) setImmediate(step);
      } catch {
        // Never the run's error: the first inspected connection meets it again (upstreamOf).
      }
    };
    setImmediate(step);
  }

  function record(kind: EgressKind, started: number, outcome: Outcome): void {
    const cleartext = kind === 'http' || outcome.cleartext === true;
    const strict =
      learn && outcome.decision === 'allow' ? allowlist.decide(outcome.host, outcome.port, { cleartext }) : undefined;
    const learned = strict?.decision === 'deny' ? strict : undefined;
    log.record({
      time: new Date(started).toISOString(),
      cell: options.cell ?? '',
      run: options.run ?? '',
      kind,
      host: (normalizeHost(outcome.host) ?? outcome.host).slice(0, 255),
      port: outcome.port,
      address: outcome.address,
      decision: outcome.decision,
      rule: learned ? null : outcome.rule,
      reason: learned ? 'learned' : outcome.reason,
      bytesUp: outcome.bytesUp ?? 0,
      bytesDown: outcome.bytesDown ?? 0,
      durationMs: Date.now() - started,
      ...(outcome.revoked ? { revoked: true as const } : {}),
      ...(outcome.inspected ? { inspected: true as const } : {}),
      ...(outcome.kernelRelay ? { kernelRelay: true as const } : {}),
      ...(outcome.method !== undefined ? { method: outcome.method, path: outcome.path, status: outcome.status } : {}),
      ...(outcome.injected ? { injected: outcome.injected } : {}),
      ...(learned ? { wouldBe: { decision: 'deny' as const, reason: learned.reason, rule: learned.rule } } : {}),
    });
  }

  async function destination(request: DestinationRequest): Promise<DestinationResult> {
    const result = await openDestination(
      {
        matcher,
        lookup,
        connectTimeoutMs,
        track: (socket) => {
          upstreams.add(socket);
          socket.once('close', () => upstreams.delete(socket));
        },
      },
      request,
    );
    if (!result.ok || lifecycle.listening()) return result;
    result.upstream.destroy();
    return {
      ok: false,
      denial: { host: result.host, port: result.port, reason: 'gateway-closing', rule: null },
      address: null,
    };
  }

  function tunnelHooks(kind: EgressKind, started: number, inspected: boolean): TunnelHooks {
    return {
      matcher: () => matcher,
      opened: (tunnel) => {
        tunnels.add(tunnel);
        if (inspected) inspectedTunnels.add(tunnel);
      },
      closed: (tunnel, outcome) => {
        tunnels.delete(tunnel);
        const { host, port, address } = tunnel.target;
        record(kind, started, { ...outcome, host, port, address, inspected, cleartext: tunnel.cleartext });
      },
    };
  }

  /** Once per gateway (built in steps from warmUp, the rest at its first use), not per connection. */
  function upstreamOf(inspect: GatewayInspectOptions): UpstreamTrust {
    return (upstream ??= upstreamTrust(inspect.upstreamCa, inspect.upstreamAnchors));
  }

  function inspectContext(target: TunnelTarget): InspectContext {
    const inspect = options.inspect;
    if (!inspect) throw new AgentcellError('INTERNAL', 'inspection without a cell CA');
    return {
      secureContext: (host) => inspect.leaves.secureContext(host),
      upstreamTrust: () => upstreamOf(inspect).first(),
      fullUpstreamTrust: () => upstreamOf(inspect).full(),
      verifiedUpstream: (socket) => upstreamOf(inspect).learn(socket),
      inspection: () => inspection,
      async reopen() {
        const result = await destination({ host: target.host, port: target.port });
        if (!result.ok)
          throw new Error(`${result.denial.reason}${result.denial.detail ? `: ${result.denial.detail}` : ''}`);
        return result.upstream;
      },
      recordRequest: (started, request) => record('request', started, request),
      ...(spy ? { spy } : {}),
      ...(inspect.onLlmRequest ? { llmRequestStarts: inspect.onLlmRequest } : {}),
      redact: (text) => redactSecrets(text, redactions),
    };
  }

  return {
    clientReads,
    authFailure(header) {
      const result = checkProxyAuthorization(header, options.token);
      return result === 'ok' ? undefined : result;
    },
    credentialsValid: (user, password) => checkCredentials(user, password, options.token) === 'ok',
    matcher: () => matcher,
    inspects: (host, port) => inspection.inspects(host, port),
    destination,
    async tunnelDestination(host, port) {
      // A spliced tunnel reads its upstream into pooled buffers (`onread`); an inspected one
      // keeps node's reads for its TLS socket. So the choice is made before connecting, and kept.
      const reads = inspection.inspects(host, port) ? undefined : createPooledReads();
      const result = await destination({ host, port, ...(reads ? { reads } : {}) });
      return result.ok ? { ...result, reads } : result;
    },
    joinTunnel(client, head, kind, { upstream, reads, host, port, address, rule }, started) {
      const target: TunnelTarget = { kind, host, port, address, rule };
      if (reads)
        return spliceTunnel(client, upstream, head, target, tunnelHooks(kind, started, false), {
          upstream: reads,
          client: clientReads.get(client),
        });
      return inspectTunnel(client, upstream, head, target, tunnelHooks(kind, started, true), inspectContext(target));
    },
    holdOpen(tunnel) {
      tunnels.add(tunnel);
      return () => tunnels.delete(tunnel);
    },
    record,
    refuseRaw(kind, client, denial, started, address = null) {
      record(kind, started, { ...denial, address, decision: 'deny' });
      endRefused(client, rawDenyResponse(denial));
      if (warmUpAfter !== undefined && normalizeHost(denial.host) === warmUpAfter) {
        warmUpAfter = undefined;
        setImmediate(startWarmUp); // after the refusal is on its way
      }
    },
    openLogs: async () => {
      await log.open();
      await spy?.open();
    },
    closeLogs: async () => {
      await log.close();
      await spy?.close();
    },
    destroyUpstreams() {
      for (const socket of upstreams) socket.destroy();
    },
    reload(rules) {
      const nextAllowlist = compileHostRules(rules);
      const nextLearn = rules.learn === true;
      const next = nextLearn ? learningMatcher(nextAllowlist) : nextAllowlist;
      // Keys a reload leaves out keep their value: a reload of allow/deny alone never drops L7 rules.
      const nextRules = { inspect: rules.inspect ?? inspectRules.inspect, rule: rules.rule ?? inspectRules.rule };
      const nextInspection = compileInspection(nextRules, options.inspect);
      allowlist = nextAllowlist;
      learn = nextLearn;
      matcher = next;
      inspectRules = nextRules;
      inspection = nextInspection;
      let revoked = 0;
      for (const tunnel of [...tunnels]) {
        const { host, port } = tunnel.target;
        // A tunnel spliced before its host became inspected would skip the L7 rules: close it.
        const skipsInspection = !inspectedTunnels.has(tunnel) && nextInspection.inspects(host, port);
        if (stillAllowed(next, tunnel) && !skipsInspection) continue;
        tunnel.revoke();
        revoked++;
      }
      return { revoked };
    },
    counters: () => log.counters(),
    warmUp(when = {}) {
      if (!options.inspect) return;
      if (when.afterRefusing === undefined) startWarmUp();
      else warmUpAfter = normalizeHost(when.afterRefusing);
    },
  };
}

/** Inspection rules; refused (POLICY_INVALID) when they inspect something and there is no cell CA to do it with. */
function compileInspection(rules: InspectRules, inspect: GatewayInspectOptions | undefined): InspectMatcher {
  const secrets = inspect?.secrets ?? [];
  const compiled = compileInspectRules(rules, secrets);
  const wanted = (rules.inspect?.length ?? 0) + (rules.rule?.length ?? 0) + secrets.length;
  if (wanted > 0 && !inspect)
    throw new AgentcellError(
      'POLICY_INVALID',
      'network.inspect / network.rule need TLS inspection, and this gateway was started without a cell CA',
    );
  return compiled;
}

function stillAllowed(matcher: HostMatcher, tunnel: OpenTunnel): boolean {
  const { host, port, address } = tunnel.target;
  if (matcher.decide(host, port, { cleartext: tunnel.cleartext }).decision === 'deny') return false;
  if (matcher.denyForAddress(address, port)) return false;
  return guardAddress(address, (candidate) => matcher.listsAddress(candidate, port, host)).allowed;
}
