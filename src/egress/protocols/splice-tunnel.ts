import type { Socket } from 'node:net';
import { endRefused, rawDenyResponse, TLS_ACCESS_DENIED } from './deny-response.js';
import type { PooledReads } from '../stream/pooled-reads.js';
import type { EgressKind, EgressReason } from '../log/egress-log.js';
import type { HostMatcher } from '../rules/host-rules.js';
import { FrameError } from '../stream/read-frame.js';
import { socketClosed } from '../stream/socket-closed.js';
import { PROMOTE_AFTER, startKernelRelay, type KernelRelay } from '../stream/kernel-relay.js';
import { readFirstBytes, sniRefusal, type FirstBytes } from './classify-first-bytes.js';

export interface TunnelTarget {
  kind: EgressKind;
  /** Normalized: lower-case name or canonical IP. */
  host: string;
  port: number;
  address: string;
  rule: string;
}

export interface TunnelOutcome {
  decision: 'allow' | 'deny';
  rule: string | null;
  reason: EgressReason;
  bytesUp: number;
  bytesDown: number;
  revoked: boolean;
  /** Its bulk bytes moved through the kernel relay (kernel-relay.ts). */
  kernelRelay?: boolean;
}

export interface OpenTunnel {
  readonly target: TunnelTarget;
  /** The client spoke cleartext HTTP into it (so the explicit-port rule applies). */
  readonly cleartext: boolean;
  /** Ends it now, as a reload that no longer allows it does. */
  revoke(): void;
}

export interface TunnelHooks {
  /** The rules in force now (a reload may have replaced those the tunnel opened under). */
  matcher(): HostMatcher;
  opened(tunnel: OpenTunnel): void;
  closed(tunnel: OpenTunnel, outcome: TunnelOutcome): void;
}

/** What both kinds of tunnel keep: the outcome so far, and the handle a reload revokes it by. */
export interface TunnelState {
  readonly tunnel: OpenTunnel;
  outcome: Omit<TunnelOutcome, 'bytesUp' | 'bytesDown'>;
  /** Tells `hooks.closed` the outcome, with the byte counts. */
  close(bytes: Pick<TunnelOutcome, 'bytesUp' | 'bytesDown'>): void;
}

/**
 * Opens a tunnel's books (allowed by its rule, until something refuses it) and hands
 * `hooks.opened` the handle a reload revokes it by; `destroy` ends it, on revocation or
 * a client error. The client's handshake timeout ends here: a tunnel may idle.
 */
export function startTunnel(
  client: Socket,
  target: TunnelTarget,
  hooks: TunnelHooks,
  sides: { cleartext: () => boolean; destroy: () => void },
): TunnelState {
  const state: TunnelState = {
    outcome: { decision: 'allow', rule: target.rule, reason: 'allow-rule', revoked: false },
    tunnel: {
      target,
      get cleartext() {
        return sides.cleartext();
      },
      revoke() {
        state.outcome = { ...state.outcome, revoked: true };
        sides.destroy();
      },
    },
    close: (bytes) => hooks.closed(state.tunnel, { ...state.outcome, ...bytes }),
  };
  hooks.opened(state.tunnel);
  client.setTimeout(0);
  client.on('error', sides.destroy);
  return state;
}

/** The pooled reads of a tunnel's sockets; `client` is missing when node could not re-wrap it. */
export interface TunnelReads {
  upstream: PooledReads;
  client: PooledReads | undefined;
}

/**
 * Joins an accepted client to its connected upstream (opened with `reads.upstream`). The
 * upstream's bytes flow at once (server-first protocols such as SSH banners and SMTP work); the client's are
 * held until its first bytes are classified:
 * - a TLS ClientHello must name the target (SNI, case-insensitive); no SNI is allowed
 *   only when the target is an IP address. On refusal the client gets a TLS
 *   `access_denied` alert and the connection closes (a 403 can't be sent inside TLS);
 * - a cleartext HTTP request needs an allow entry with the port spelled out; on
 *   refusal the client gets the 403 in-band, since it speaks HTTP;
 * - bytes that start a TLS handshake record but hold no ClientHello this parser can
 *   read are refused like a mismatch (a parser differential must not skip the check);
 * - anything else (SSH, …) goes through on the host rules alone.
 * Resolves once both sides are closed and `hooks.closed` has been told.
 */
export function spliceTunnel(
  client: Socket,
  upstream: Socket,
  initial: Buffer,
  target: TunnelTarget,
  hooks: TunnelHooks,
  reads: TunnelReads,
): Promise<void> {
  let cleartext = false;
  let kernel: KernelRelay | undefined;
  const destroyBoth = (): void => {
    kernel?.stop();
    client.destroy();
    upstream.destroy();
  };
  const state = startTunnel(client, target, hooks, { cleartext: () => cleartext, destroy: destroyBoth });
  upstream.on('error', destroyBoth);
  // A side that closes with an error takes the other down; a clean close leaves the
  // other to finish flushing what it holds (a half-close is passed on as end()).
  // A closed side also ends a kernel relay (a closing gateway destroys only upstreams).
  client.once('close', (hadError) => {
    kernel?.stop();
    if (hadError) upstream.destroy();
  });
  upstream.once('close', (hadError) => {
    kernel?.stop();
    if (hadError) client.destroy();
  });
  reads.upstream.relayTo(client);

  const done = Promise.all([socketClosed(client), socketClosed(upstream)]).then(async () => {
    const moved = await kernel?.finished;
    const [up, down] = moved?.taken ? [moved.up, moved.down] : [0, 0];
    state.close({ bytesUp: upstream.bytesWritten + up, bytesDown: upstream.bytesRead + down });
  });

  readFirstBytes(client, initial).then(
    ({ value, rest }) => {
      const refusal = firstBytesRefusal(value, target, hooks.matcher());
      if (refusal) {
        state.outcome = { ...state.outcome, decision: 'deny', ...refusal };
        reads.upstream.discard();
        upstream.destroy();
        const denial = { host: target.host, port: target.port, ...refusal };
        endRefused(client, value.kind === 'http' ? rawDenyResponse(denial) : TLS_ACCESS_DENIED);
        return;
      }
      if (value.kind === 'http') {
        cleartext = true;
        state.outcome = {
          ...state.outcome,
          rule: hooks.matcher().decide(target.host, target.port, { cleartext }).rule,
        };
      }
      if (rest.length > 0) upstream.write(rest);
      const clientReads = reads.client;
      if (!clientReads) return void client.pipe(upstream);
      clientReads.relayTo(upstream);
      const relays = [reads.upstream, clientReads];
      // Checked by now: a tunnel that turns out to be bulk goes to the kernel relay.
      const watch = (): void => {
        if (upstream.bytesRead + upstream.bytesWritten < PROMOTE_AFTER) return;
        for (const relay of relays) relay.observe(undefined);
        void handOver(client, upstream, relays).then((relay) => {
          kernel = relay;
          void relay?.finished.then((result) => {
            if (result.taken) {
              state.outcome = { ...state.outcome, kernelRelay: true };
              return destroyBoth();
            }
            kernel = undefined;
            if (!client.destroyed && !upstream.destroyed) for (const r of relays) r.release();
          });
        });
      };
      for (const relay of relays) relay.observe(watch);
    },
    // The client left before saying anything, or sent more than a ClientHello can be.
    (error: unknown) => {
      if (error instanceof FrameError && error.why !== 'closed')
        state.outcome = { ...state.outcome, decision: 'deny', reason: 'tls-unreadable' };
      destroyBoth();
    },
  );
  return done;
}

/**
 * Stops node's relays of a tunnel and, once their writes have left, hands both sockets to
 * the kernel relay; when none can take them (no helper here, all busy, or the tunnel ended
 * meanwhile), node's relays go on.
 */
async function handOver(
  client: Socket,
  upstream: Socket,
  relays: readonly PooledReads[],
): Promise<KernelRelay | undefined> {
  await Promise.all(relays.map((relay) => relay.hold()));
  const ended = [client, upstream].some((s) => s.destroyed || s.readableEnded || s.writableEnded);
  const relay = ended ? undefined : startKernelRelay(client, upstream);
  if (!relay && !client.destroyed && !upstream.destroyed) for (const r of relays) r.release();
  return relay;
}

function firstBytesRefusal(
  first: FirstBytes,
  target: TunnelTarget,
  matcher: HostMatcher,
): { reason: EgressReason; rule: string | null } | undefined {
  switch (first.kind) {
    case 'tls': {
      const reason = sniRefusal(first.sni, target.host);
      return reason ? { reason, rule: target.rule } : undefined;
    }
    case 'tls-unreadable':
      return { reason: 'tls-unreadable', rule: target.rule };
    case 'http': {
      const decision = matcher.decide(target.host, target.port, { cleartext: true });
      return decision.decision === 'deny' ? { reason: decision.reason, rule: decision.rule } : undefined;
    }
    case 'other':
    case 'more':
      return undefined;
  }
}
