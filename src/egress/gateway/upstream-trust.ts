import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type DetailedPeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { writeFileAtomic } from '../../_internal/atomic-file.js';

/** One PEM block, whatever it holds (OpenSSL reads the certificates among them and skips the rest). */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** CAs per step: ~2 ms of OpenSSL's parsing here. */
const CAS_PER_STEP = 16;
/** Anchors kept per cell at most (the newest): a cell's upstreams chain to a handful. */
const MAX_ANCHORS = 64;

/** The context upstream certificates are verified against, built a few CAs at a time. */
export interface UpstreamTrustInSteps {
  /** Adds the next few CAs; true once every one is in. */
  step(): boolean;
  /** The context with every CA in: what is left is added now. */
  context(): SecureContext;
  /** The distinct PEM blocks the context is built from. */
  readonly blocks: readonly string[];
}

/**
 * The context upstream certificates are verified against: the CAs in `pems` (PEM texts of
 * one or many certificates each), every one of them once. Node's roots and a system bundle
 * are mostly the same CAs, and OpenSSL parses each copy it is given: building the context
 * from both costs ~45 ms of CPU, from the distinct ones half that. Built a step at a time,
 * so a warm-up can build it between the gateway's other work: a connection that comes
 * meanwhile waits for one step (~2 ms), not for the whole store. A block OpenSSL cannot
 * parse adds nothing, as with createSecureContext's `ca`.
 */
export function upstreamTrustInSteps(pems: readonly string[]): UpstreamTrustInSteps {
  const blocks = distinctPemBlocks(pems);
  // With `ca` given (even empty) node starts from an empty store of this context's own, not its roots.
  const context = createSecureContext({ ca: [] });
  // What createSecureContext does with each `ca` entry (node's _tls_common.js).
  const native = context.context as { addCACert(pem: string): void };
  let next = 0;
  const add = (upTo: number): boolean => {
    for (; next < Math.min(upTo, blocks.length); next++) native.addCACert(blocks[next] ?? '');
    return next >= blocks.length;
  };
  return {
    blocks,
    step: () => add(next + CAS_PER_STEP),
    context: () => {
      add(blocks.length);
      return context;
    },
  };
}

/** Every PEM block in `pems` once (told apart by their text, whitespace aside), in first-seen order. */
export function distinctPemBlocks(pems: readonly string[]): string[] {
  const blocks = new Map<string, string>();
  for (const pem of pems)
    for (const [block] of pem.matchAll(PEM_BLOCK)) {
      const key = block.replace(/\s+/g, '');
      if (!blocks.has(key)) blocks.set(key, block);
    }
  return [...blocks.values()];
}

/**
 * The CAs an earlier run's upstream chains ended in, kept per cell (upstream-anchors.pem
 * beside the cell CA): PEM blocks as the store held them. A cache that can only narrow the
 * trust: what it names counts only while the store holds the very same text.
 */
export interface UpstreamAnchors {
  read(): string[];
  write(blocks: readonly string[]): void;
}

export function upstreamAnchorsFile(path: string): UpstreamAnchors {
  return {
    read() {
      try {
        return [...readFileSync(path, 'utf8').matchAll(PEM_BLOCK)].map(([block]) => block);
      } catch {
        return [];
      }
    },
    write(blocks) {
      try {
        writeFileAtomic(path, `${blocks.join('\n')}\n`, 0o600, { durable: false });
      } catch {
        // A cache: the next run verifies against every CA and learns them again.
      }
    },
  };
}

/** What an upstream is verified against: the remembered anchors first, when there are any. */
export interface UpstreamTrust {
  /** Builds a little more of what `first()` returns (the gateway's warm-up); true once it is built. */
  step(): boolean;
  /**
   * The context to verify an upstream with: only the anchors earlier runs' upstreams chained to
   * (`partial`) while the full store has not been needed, else every CA.
   */
  first(): { context: SecureContext; partial: boolean };
  /** Every CA: for an upstream that did not verify against the anchors alone. */
  full(): SecureContext;
  /** After `socket` verified against every CA: keeps the store's CAs in its chain for later runs. */
  learn(socket: TLSSocket): void;
}

/**
 * Parsing every CA costs ~65 ms of CPU per gateway here (166 distinct CAs at ~0.4 ms in
 * OpenSSL 3.0), in the seconds an agent starts beside it, and an agent talks to a handful of
 * hosts whose chains end in a handful of CAs. With `anchors`, the first context holds only the
 * remembered CAs that the store still holds (the same PEM text): a subset of the store, so it
 * trusts nothing the store would not. A chain it cannot verify is verified again against every
 * CA (built then), whose verdict stands; its anchor is remembered for later runs.
 */
export function upstreamTrust(pems: readonly string[], anchors?: UpstreamAnchors): UpstreamTrust {
  let known: string[] | undefined;
  const remembered = (): string[] =>
    (known ??= [...new Set(anchors?.read() ?? [])].filter((block) => pems.some((pem) => pem.includes(block))));
  let all: UpstreamTrustInSteps | undefined;
  const everyCa = (): UpstreamTrustInSteps => (all ??= upstreamTrustInSteps(pems));
  let subset: SecureContext | undefined;
  const partial = (): boolean => all === undefined && remembered().length > 0;
  const anchorsContext = (): SecureContext => (subset ??= upstreamTrustInSteps(remembered()).context());
  let inStore: Map<string, string> | undefined;
  return {
    step() {
      if (!partial()) return everyCa().step();
      anchorsContext();
      return true;
    },
    first: () =>
      partial() ? { context: anchorsContext(), partial: true } : { context: everyCa().context(), partial: false },
    full: () => everyCa().context(),
    learn(socket) {
      if (!anchors) return;
      // Learning follows a verification against every CA: the store's blocks are split already.
      inStore ??= new Map(
        everyCa()
          .blocks.filter((block) => block.startsWith('-----BEGIN CERTIFICATE-----'))
          .map((block) => [derFingerprint(block), block]),
      );
      const found = chainFingerprints(socket)
        .map((fingerprint) => inStore?.get(fingerprint))
        .filter((block): block is string => block !== undefined && !remembered().includes(block));
      if (found.length === 0) return;
      known = [...remembered(), ...found].slice(-MAX_ANCHORS);
      anchors.write(known);
    },
  };
}

/** SHA-256 of a PEM certificate's DER, lower-case hex. */
function derFingerprint(block: string): string {
  const base64 = block.replace(/-----(BEGIN|END) [A-Z0-9 ]+-----/g, '').replace(/\s+/g, '');
  return createHash('sha256').update(Buffer.from(base64, 'base64')).digest('hex');
}

/** The SHA-256 of each certificate of a verified peer's chain, up to the root OpenSSL found for it. */
function chainFingerprints(socket: TLSSocket): string[] {
  const out: string[] = [];
  let cert: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (cert?.fingerprint256) {
    const fingerprint = cert.fingerprint256.replace(/:/g, '').toLowerCase();
    if (out.includes(fingerprint)) break; // a root is its own issuer
    out.push(fingerprint);
    cert = cert.issuerCertificate; // undefined at runtime where the chain stops short of a root
  }
  return out;
}
