import { lookup as dnsLookup } from 'node:dns/promises';
import { connect, type Socket } from 'node:net';
import { ipFamily } from '../../_internal/ip-family.js';
import { guardAddress } from '../rules/address-guard.js';
import type { Denial } from '../protocols/deny-response.js';
import type { PooledReads } from '../stream/pooled-reads.js';
import { normalizeHost, type HostMatcher } from '../rules/host-rules.js';

/** Name to addresses, in the order to try them. */
export type LookupFunction = (host: string) => Promise<string[]>;

export interface DestinationRequest {
  host: string;
  port: number;
  /** Cleartext HTTP: needs an allow entry with an explicit port. */
  cleartext?: boolean;
  /** The upstream reads into these buffers instead of node's (bound to the connected socket). */
  reads?: PooledReads;
}

export type DestinationResult =
  | { ok: true; host: string; port: number; address: string; rule: string; upstream: Socket }
  | { ok: false; denial: Denial; address: string | null };

export interface DestinationContext {
  matcher: HostMatcher;
  lookup: LookupFunction;
  connectTimeoutMs: number;
  /** Sees each upstream socket as it is made, so a closing gateway can destroy it. */
  track?: (socket: Socket) => void;
}

/** getaddrinfo, as the rest of the system resolves (hosts file included). */
export async function systemLookup(host: string): Promise<string[]> {
  const results = await dnsLookup(host, { all: true, verbatim: true });
  return results.map((result) => result.address);
}

/**
 * Decides and connects, in this order, so that nothing happens for a refused name:
 * 1. host rules (no DNS query is made for a denied name: no DNS exfiltration);
 * 2. addresses: the `resolve` override, the IP literal itself, else DNS;
 * 3. each address against deny entries and the address guard (non-public addresses
 *    only when the policy lists them for this destination);
 * 4. TCP connect to the first acceptable address, trying the next on failure. The
 *    socket is connected to the checked IP itself: nothing is resolved twice.
 */
export async function openDestination(
  context: DestinationContext,
  request: DestinationRequest,
): Promise<DestinationResult> {
  const { matcher } = context;
  const host = normalizeHost(request.host) ?? request.host;
  const { port } = request;
  const refuse = (denial: Omit<Denial, 'host' | 'port'>, address: string | null = null): DestinationResult => ({
    ok: false,
    denial: { host, port, ...denial },
    address,
  });

  const decision = matcher.decide(host, port, { cleartext: request.cleartext ?? false });
  if (decision.decision === 'deny') return refuse({ reason: decision.reason, rule: decision.rule });

  let addresses: string[];
  if (ipFamily(host) !== 0) addresses = [host];
  else {
    const pinned = matcher.resolveOverride(host);
    try {
      addresses = pinned === undefined ? await context.lookup(host) : [pinned];
    } catch (error) {
      return refuse({ reason: 'resolve-failed', rule: decision.rule, detail: errorCode(error) });
    }
  }
  if (addresses.length === 0) return refuse({ reason: 'resolve-failed', rule: decision.rule, detail: 'no addresses' });

  const acceptable: string[] = [];
  let firstRefusal: DestinationResult | undefined;
  for (const candidate of addresses) {
    const denied = matcher.denyForAddress(candidate, port);
    if (denied) {
      firstRefusal ??= refuse({ reason: denied.reason, rule: denied.rule }, candidate);
      continue;
    }
    const verdict = guardAddress(candidate, (address) => matcher.listsAddress(address, port, host));
    if (!verdict.allowed) {
      const detail = `${verdict.address} is a ${verdict.class}`;
      firstRefusal ??= refuse({ reason: 'blocked-address', rule: null, detail }, verdict.address);
      continue;
    }
    acceptable.push(verdict.address);
  }
  if (acceptable.length === 0)
    return firstRefusal ?? refuse({ reason: 'resolve-failed', rule: decision.rule, detail: 'no addresses' });

  let lastError: unknown;
  for (const address of acceptable) {
    try {
      const upstream = await connectTo(address, port, context, request.reads);
      return { ok: true, host, port, address, rule: decision.rule ?? host, upstream };
    } catch (error) {
      lastError = error;
    }
  }
  return refuse(
    { reason: 'connect-failed', rule: decision.rule, detail: errorCode(lastError) },
    acceptable[acceptable.length - 1] ?? null,
  );
}

function connectTo(
  address: string,
  port: number,
  context: DestinationContext,
  reads: PooledReads | undefined,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // An IP literal: net.connect does not consult DNS for it.
    const socket = connect({ host: address, port, allowHalfOpen: true, ...(reads ? { onread: reads.onread } : {}) });
    reads?.bind(socket);
    context.track?.(socket);
    socket.on('error', () => socket.destroy()); // never an unhandled 'error': fail closed
    const timer = setTimeout(() => socket.destroy(new Error('ETIMEDOUT')), context.connectTimeoutMs);
    const onError = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const onClose = (): void => onError(new Error('ECONNABORTED'));
    socket.once('error', onError);
    socket.once('close', onClose);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

function errorCode(error: unknown): string {
  if (error && typeof error === 'object' && 'code' in error && typeof error.code === 'string') return error.code;
  return error instanceof Error ? error.message : 'unknown error';
}
