import type { Socket } from 'node:net';
import type { SecureContext, TLSSocket } from 'node:tls';
import type { EgressEvent } from '../../log/egress-log.js';
import type { LlmProvider, SpyRecorder } from '../../log/spy-log.js';
import type { InspectMatcher } from '../../rules/inspect-rules.js';

/** The fields of a `request` event the tunnel knows; the gateway stamps time, cell, run. */
export type RequestRecord = Pick<
  EgressEvent,
  'host' | 'port' | 'address' | 'decision' | 'rule' | 'reason' | 'bytesUp' | 'bytesDown' | 'method' | 'path' | 'status'
> & { injected?: string[] };

/** An LLM API request as it starts: `at` equals its spy record's `time`. */
export interface LlmRequestStart {
  at: string;
  provider: LlmProvider;
  host: string;
  path: string;
}

/** What an inspected tunnel gets from its gateway. */
export interface InspectContext {
  /** The leaf certificate for a host, signed by the cell CA (cached). */
  secureContext(host: string): Promise<SecureContext>;
  /**
   * What an upstream certificate is verified against first: the CAs earlier runs' upstreams
   * chained to (`partial`: a chain it cannot verify gets a second try with `fullUpstreamTrust`),
   * or every CA an upstream may chain to (system CAs plus `upstream_ca`). Made once per gateway.
   */
  upstreamTrust(): { context: SecureContext; partial: boolean };
  /** Every CA an upstream may chain to. */
  fullUpstreamTrust(): SecureContext;
  /** Told of each upstream verified against every CA: the CA its chain ends in is remembered. */
  verifiedUpstream(socket: TLSSocket): void;
  /** The inspect rules in force now (a reload may replace them). */
  inspection(): InspectMatcher;
  /** A new checked TCP connection to the same destination, for requests after the first connection closed. */
  reopen(): Promise<Socket>;
  /** Logs one request decision (`request` event) that started at `started`. */
  recordRequest(started: number, record: RequestRecord): void;
  /** Captures LLM API exchanges when given. */
  spy?: SpyRecorder;
  /** Told as each LLM API request starts; the request's answer waits for it (the run's turn checkpoint). */
  llmRequestStarts?: (start: LlmRequestStart) => Promise<void>;
  /** Replaces secret values in anything logged. */
  redact(text: string): string;
}
