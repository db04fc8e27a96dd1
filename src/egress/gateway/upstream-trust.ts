import { createSecureContext, type SecureContext } from 'node:tls';

/** One PEM block, whatever it holds (OpenSSL reads the certificates among them and skips the rest). */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/**
 * The context upstream certificates are verified against: the CAs in `pems` (PEM texts of
 * one or many certificates each), every one of them once. Node's roots and a system bundle
 * are mostly the same CAs, and OpenSSL parses each copy it is given: building the context
 * from both costs ~45 ms of CPU, from the distinct ones half that.
 */
export function upstreamTrustContext(pems: readonly string[]): SecureContext {
  return createSecureContext({ ca: distinctPemBlocks(pems) });
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
