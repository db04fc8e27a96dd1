import { CANARY_HOST } from '../../_internal/vocabulary.js';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import * as z from 'zod/mini';
import type { HostReason } from '../rules/host-rules.js';
import { makeDirs } from '../../_internal/make-dirs.js';

/**
 * Why a connection went the way it did; stable codes that scripts, the 403's
 * `X-Agentcell-Denied` header and the egress log all share.
 */
export type EgressReason =
  | HostReason
  /** The destination address is loopback/private/link-local/… and the policy does not list it. */
  | 'blocked-address'
  | 'resolve-failed'
  | 'connect-failed'
  /** The TLS ClientHello names another host than the CONNECT/SOCKS target. */
  | 'sni-mismatch'
  /** A TLS ClientHello without SNI to a name (an IP target may omit it). */
  | 'sni-missing'
  /** Starts as a TLS handshake but holds no ClientHello the gateway can read: refused, never guessed. */
  | 'tls-unreadable'
  | 'proxy-auth-required'
  | 'proxy-auth-invalid'
  | 'bad-request'
  /** A SOCKS command other than CONNECT, a non-http:// forward URL, an HTTP upgrade. */
  | 'unsupported'
  | 'gateway-closing'
  /** Inspected TLS: the HTTP Host differs from the SNI and the CONNECT/SOCKS target. */
  | 'host-mismatch'
  /** Inspected host with `[[network.rule]]` entries: no rule allows this method and path. */
  | 'no-matching-rule'
  /** Inspected host: the upstream's certificate is not trusted (system CAs + `upstream_ca`) or names another host. */
  | 'upstream-cert-invalid'
  /** Inspected host: only TLS can reach it (cleartext or other protocols would skip the checks). */
  | 'inspect-needs-tls'
  /** A host with an injected secret answered in an encoding the gateway can't undo, so can't mask the secret in. */
  | 'response-encoding';

/** `request`: one HTTP request inside an inspected TLS tunnel. */
export type EgressKind = 'connect' | 'http' | 'socks' | 'request';

/** One decision, one JSONL line in the run's egress log. */
export interface EgressEvent {
  /** When the decision was taken (ISO 8601); allowed tunnels are written when they close. */
  time: string;
  cell: string;
  run: string;
  kind: EgressKind;
  host: string;
  port: number;
  /** The address connected to (or refused), canonical; null when none was reached. */
  address: string | null;
  decision: 'allow' | 'deny';
  rule: string | null;
  reason: EgressReason;
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  /** Set when a reload revoked an allowed tunnel and the gateway closed it. */
  revoked?: true;
  /** A tunnel whose TLS the gateway terminated (`inspect`); its requests are `request` events. */
  inspected?: true;
  /**
   * A tunnel (past its first 4 MiB) or a forward request's Content-Length body (past its
   * head) whose bytes the kernel moved (splice(2), stream/kernel-relay.ts) instead of the
   * gateway's own relay; the counts include them.
   */
  kernelRelay?: true;
  /** `request` events: the method, the path without its query, the upstream's status (0: none). */
  method?: string;
  path?: string;
  status?: number;
  /** `request` events: the names of the `[secrets]` the gateway added as headers (never their values). */
  injected?: string[];
  /**
   * Learn mode, on an allowed event (reason `learned`): what the policy's allow list
   * would have decided, so `allow --from-log` can turn it into an entry.
   */
  wouldBe?: { decision: 'deny'; reason: HostReason; rule: string | null };
}

/** Every reason, once: one missing here, or not in the type, does not compile. */
const HOST_REASONS = {
  'allow-rule': true,
  learned: true,
  'deny-rule': true,
  'not-allowed': true,
  'cleartext-not-allowed': true,
  'invalid-host': true,
} satisfies Record<HostReason, true>;
const EGRESS_REASONS = {
  ...HOST_REASONS,
  'blocked-address': true,
  'resolve-failed': true,
  'connect-failed': true,
  'sni-mismatch': true,
  'sni-missing': true,
  'tls-unreadable': true,
  'proxy-auth-required': true,
  'proxy-auth-invalid': true,
  'bad-request': true,
  unsupported: true,
  'gateway-closing': true,
  'host-mismatch': true,
  'no-matching-rule': true,
  'upstream-cert-invalid': true,
  'inspect-needs-tls': true,
  'response-encoding': true,
} satisfies Record<EgressReason, true>;
const reasonOf = <R extends string>(all: Record<R, true>) => z.enum(Object.keys(all) as [R, ...R[]]);
const count = z.number().check(z.nonnegative());

/** An egress log line as read back (`log/egress-log-reader.ts`); typed so it can only hold an `EgressEvent`. */
export const EgressEventSchema: z.ZodMiniType<EgressEvent> = z.strictObject({
  time: z.iso.datetime(),
  cell: z.string(),
  run: z.string(),
  kind: z.enum(['connect', 'http', 'socks', 'request']),
  host: z.string(),
  port: z.int().check(z.gte(0), z.lte(65535)),
  address: z.nullable(z.string()),
  decision: z.enum(['allow', 'deny']),
  rule: z.nullable(z.string()),
  reason: reasonOf<EgressReason>(EGRESS_REASONS),
  bytesUp: count,
  bytesDown: count,
  durationMs: count,
  revoked: z.optional(z.literal(true)),
  inspected: z.optional(z.literal(true)),
  method: z.optional(z.string()),
  path: z.optional(z.string()),
  status: z.optional(z.int()),
  injected: z.optional(z.array(z.string())),
  wouldBe: z.optional(
    z.strictObject({
      decision: z.literal('deny'),
      reason: reasonOf<HostReason>(HOST_REASONS),
      rule: z.nullable(z.string()),
    }),
  ),
});

export interface EgressCounters {
  allowed: number;
  denied: number;
}

export interface EgressLog {
  /** Opens the log file (append, 0600, parent made 0700); rejects when it can't. */
  open(): Promise<void>;
  record(event: EgressEvent): void;
  counters(): EgressCounters;
  /** Flushes and closes the file. */
  close(): Promise<void>;
}

/**
 * The JSONL writer plus the receipt counters. `onError` fires once if the file can't
 * be written: the gateway then shuts down, since an unlogged decision is not allowed.
 */
export function createEgressLog(options: {
  path?: string;
  onEvent?: (event: EgressEvent) => void;
  onError: (error: Error) => void;
}): EgressLog {
  const counts: EgressCounters = { allowed: 0, denied: 0 };
  let stream: WriteStream | undefined;
  let failed = false;
  const fail = (error: Error): void => {
    if (failed) return;
    failed = true;
    options.onError(error);
  };

  return {
    async open() {
      if (options.path === undefined || stream) return;
      makeDirs(dirname(options.path), 0o700);
      const opened = createWriteStream(options.path, { flags: 'a', mode: 0o600 });
      await once(opened, 'open');
      opened.on('error', fail);
      stream = opened;
    },
    record(event) {
      // The canary's own probe is the cell checking itself, not something the command tried.
      if (event.decision === 'allow') counts.allowed++;
      else if (event.host !== CANARY_HOST) counts.denied++;
      stream?.write(`${JSON.stringify(event)}\n`);
      try {
        options.onEvent?.(event);
      } catch (error) {
        fail(error instanceof Error ? error : new Error(String(error)));
      }
    },
    counters() {
      return { ...counts };
    },
    async close() {
      const current = stream;
      stream = undefined;
      if (!current || current.destroyed) return;
      await new Promise<void>((resolve) => current.end(resolve));
    },
  };
}
