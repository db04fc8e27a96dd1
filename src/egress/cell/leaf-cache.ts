import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { ipFamily } from '../../_internal/ip-family.js';
import { makeDirs } from '../../_internal/make-dirs.js';
import { writeFileAtomic } from '../../_internal/atomic-file.js';
import type { CellCaFiles } from './cell-trust.js';

/** A cached leaf with less than this left is minted afresh (leaves live a week). */
const LEAF_MIN_LEFT_MS = 86_400_000;

/**
 * The leaves a cell's CA signed, kept beside it: `<ca dir>/leaves/<sha256 of the host>.pem`,
 * 0600, the certificate and its key. A run that inspects a name an earlier run did serves
 * that leaf without loading @peculiar/x509 or signing anything (the minter's load is the
 * longest stretch a run's gateway keeps the event loop busy). The key on disk adds nothing
 * to what that directory holds already: the CA key, which can sign any leaf. A leaf is
 * served only when node's own X.509 parser confirms it, a file at a time: a certificate
 * for exactly this host, no CA, issued and signed by this CA, its key the certificate's,
 * valid now and for LEAF_MIN_LEFT_MS more. Anything else (another CA's, expired, for
 * another name, damaged) is as no file: the leaf is minted and the file replaced.
 */
export interface LeafCache {
  /** The context of a valid cached leaf for `host` (lower-case), or undefined. */
  context(host: string): SecureContext | undefined;
  /** Keeps a freshly minted leaf; a failure to write loses only the cache. */
  save(host: string, certPem: string, keyPem: string): void;
}

export function openLeafCache(files: CellCaFiles, caCertPem: string, now: () => number = Date.now): LeafCache {
  const dir = join(files.dir, 'leaves');
  // Parsed at the first lookup, not before the cell starts (a run may inspect nothing).
  let ca: X509Certificate | undefined;
  const path = (host: string): string => join(dir, `${createHash('sha256').update(host).digest('hex')}.pem`);
  return {
    context(host) {
      let text: string;
      try {
        text = readFileSync(path(host), 'utf8');
      } catch {
        return undefined;
      }
      try {
        ca ??= new X509Certificate(caCertPem);
        const leaf = new X509Certificate(text);
        const key = createPrivateKey(text);
        const at = now();
        const names = ipFamily(host) !== 0 ? leaf.checkIP(host) : leaf.checkHost(host, { wildcards: false });
        const valid =
          names !== undefined &&
          !leaf.ca &&
          leaf.checkIssued(ca) &&
          leaf.verify(ca.publicKey) &&
          leaf.checkPrivateKey(key) &&
          Date.parse(leaf.validFrom) <= at &&
          Date.parse(leaf.validTo) - at > LEAF_MIN_LEFT_MS;
        return valid ? leafServerContext(text, text) : undefined;
      } catch {
        return undefined;
      }
    },
    save(host, certPem, keyPem) {
      try {
        makeDirs(dir, 0o700);
        writeFileAtomic(path(host), `${certPem.trimEnd()}\n${keyPem}`, 0o600, { durable: false });
      } catch {
        // A cache: the next run mints the leaf again.
      }
    },
  };
}

/**
 * The context that serves a leaf to the cell. `ca: []` because a context without `ca` gets
 * node's whole root store, parsed at the process's first such context (~17 ms here, on the
 * gateway's event loop in the cell's first seconds, plus OpenSSL's one-time set-up of ~28 ms
 * that the process's first CA parse pays wherever it happens), and a server that asks no
 * client for a certificate verifies nothing with it; it sends the certificate it is given.
 */
export function leafServerContext(keyPem: string, certPem: string): SecureContext {
  return createSecureContext({ key: keyPem, cert: certPem, ca: [], minVersion: 'TLSv1.2' });
}

/** Drops every cached leaf (a new CA: none of them chains to it). */
export function dropLeafCache(files: CellCaFiles): void {
  rmSync(join(files.dir, 'leaves'), { recursive: true, force: true });
}
