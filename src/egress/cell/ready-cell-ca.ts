import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, lstatSync, readFileSync } from 'node:fs';
import type { CellCaFiles } from './cell-trust.js';
import { writeFileAtomic } from '../../_internal/atomic-file.js';

/** A cell CA with less than this left is replaced by a new one before the run. */
export const CA_RENEW_BEFORE_MS = 30 * 86_400_000;

/**
 * The PEM of the cell's CA certificate when the CA on disk can serve this run as it is: the
 * key a private (0600) regular file holding an ECDSA P-256 key, the certificate a CA's, of
 * that key, with more than CA_RENEW_BEFORE_MS left. Checked with node's own X.509 and key parsers (a millisecond), so
 * a run whose CA is ready starts its cell before loading @peculiar/x509 (~20 ms), which
 * only minting leaves needs (cell-ca.ts). Undefined when anything is off: cell-ca.ts then
 * loads, renews or refuses the CA with its own errors.
 */
export function readyCellCaPem(files: CellCaFiles, now = new Date()): string | undefined {
  try {
    if (!existsSync(files.cert) || !existsSync(files.key)) return undefined;
    const stat = lstatSync(files.key);
    if (!stat.isFile() || (stat.mode & 0o077) !== 0) return undefined;
    const key = createPrivateKey(readFileSync(files.key, 'utf8'));
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return undefined;
    const certPem = readFileSync(files.cert, 'utf8');
    const certificate = new X509Certificate(certPem);
    if (!certificate.ca || !certificate.checkPrivateKey(key)) return undefined;
    const expires = Date.parse(certificate.validTo);
    return expires - now.getTime() > CA_RENEW_BEFORE_MS ? certPem : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The bundle a cell trusts: the rootfs's system CAs plus the cell CA, written beside the
 * CA (0644: it is public). Rewritten each run, so a system CA update reaches the cell.
 */
export function writeTrustBundle(files: CellCaFiles, caCertPem: string, systemBundle: string | undefined): void {
  let system = '';
  if (systemBundle !== undefined && existsSync(systemBundle)) system = readFileSync(systemBundle, 'utf8');
  if (system.length > 0 && !system.endsWith('\n')) system += '\n';
  // Made afresh each run: no fsync needed.
  writeFileAtomic(files.bundle, `${system}# agentcell cell CA\n${caCertPem}`, 0o644, { durable: false });
}
