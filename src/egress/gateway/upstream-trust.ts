import { createSecureContext, type SecureContext } from 'node:tls';

/** One PEM block, whatever it holds (OpenSSL reads the certificates among them and skips the rest). */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** CAs per step: ~2 ms of OpenSSL's parsing here. */
const CAS_PER_STEP = 16;

/** The context upstream certificates are verified against, built a few CAs at a time. */
export interface UpstreamTrustInSteps {
  /** Adds the next few CAs; true once every one is in. */
  step(): boolean;
  /** The context with every CA in: what is left is added now. */
  context(): SecureContext;
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
