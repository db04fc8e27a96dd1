// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { chmodSync, existsSync, lstatSync, readFileSync } from 'node:fs';
import { ipFamily } from '../../_internal/ip-family.js';
import { randomBytes, webcrypto } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { AgentcellError } from '../../errors.js';
import type { CellCaFiles } from './cell-trust.js';
import { makeDirs } from '../../_internal/make-dirs.js';
import { writeFileAtomic } from '../../_internal/atomic-file.js';
import { CA_RENEW_BEFORE_MS } from './ready-cell-ca.js';
import { dropLeafCache, leafServerContext, type LeafCache } from './leaf-cache.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** The cell CA lives a year; a run starting with less than CA_RENEW_BEFORE_MS left makes a new one. */
const CA_LIFETIME_MS = 365 * DAY_MS;
/** Leaves live for a week at most (and never past the CA); clocks a little behind still accept them. */
const LEAF_LIFETIME_MS = 7 * DAY_MS;
const BACKDATE_MS = 60 * 60 * 1000;

export interface CellCa {
  /** PEM of the CA certificate. */
  certPem: string;
  certificate: x509.X509Certificate;
  privateKey: CryptoKey;
}

/**
 * Loads the cell's CA, or makes one (ECDSA P-256, a year, pathlen 0) when there is none
 * or it is about to expire. The directory is 0700 and the key 0600: it stays on the
 * host, and only the certificate is ever bound into the cell.
 */
export async function loadOrCreateCellCa(files: CellCaFiles, cell: string, now = new Date()): Promise<CellCa> {
  makeDirs(files.dir, 0o700);
  chmodSync(files.dir, 0o700);
  if (existsSync(files.cert) && existsSync(files.key)) {
    const loaded = await loadCellCa(files);
    if (loaded.certificate.notAfter.getTime() - now.getTime() > CA_RENEW_BEFORE_MS) return loaded;
  }
  dropLeafCache(files); // none of them chains to the new CA
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const name = `CN=agentcell cell CA (${cell.replace(/[,+="\\<>;#]/g, '_')}), O=agentcell`;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + CA_LIFETIME_MS),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  writeFileAtomic(files.key, pem('PRIVATE KEY', pkcs8), 0o600);
  writeFileAtomic(files.cert, certificate.toString('pem') + '\n', 0o644);
  return { certPem: certificate.toString('pem') + '\n', certificate, privateKey: keys.privateKey };
}

/** The cell CA on disk, as it is (no renewal): its key must be a private (0600) file. */
export async function loadCellCa(files: CellCaFiles): Promise<CellCa> {
  const stat = lstatSync(files.key);
  if (!stat.isFile() || (stat.mode & 0o077) !== 0)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `the cell CA key ${files.key} is not a private (0600) file; remove ${files.dir} and run again`,
    );
  try {
    const certPem = readFileSync(files.cert, 'utf8');
    const certificate = new x509.X509Certificate(certPem);
    const der = x509.PemConverter.decodeFirst(readFileSync(files.key, 'utf8'));
    const privateKey = await webcrypto.subtle.importKey('pkcs8', der, ALGORITHM, false, ['sign']);
    return { certPem, certificate, privateKey };
  } catch (cause) {
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `the cell CA in ${files.dir} is unreadable (${(cause as Error).message}); remove the directory and run again`,
      { cause },
    );
  }
}

/**
 * Mints leaf certificates for inspected hosts, signed by the cell CA, one per host name
 * and cached for the gateway's life (ECDSA P-256: a few ms the first time, nothing after).
 * The leaves one minter makes share one key made when the minter is. With a `cache`
 * (leaf-cache.ts), a valid leaf an earlier run minted is served as it is, and what is
 * minted is kept there, key included, beside the CA key.
 */
export interface LeafMinter {
  secureContext(host: string): Promise<SecureContext>;
}

export function createLeafMinter(
  ca: CellCa,
  { now = () => new Date(), cache }: { now?: () => Date; cache?: LeafCache } = {},
): LeafMinter {
  const contexts = new Map<string, Promise<SecureContext>>();
  const leafKeys = webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const leafKeyPem = leafKeys.then(async (keys) =>
    pem('PRIVATE KEY', Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))),
  );

  async function mint(host: string): Promise<SecureContext> {
    const keys = await leafKeys;
    const start = now();
    const notAfter = Math.min(start.getTime() + LEAF_LIFETIME_MS, ca.certificate.notAfter.getTime());
    const ip = ipFamily(host) !== 0;
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: ip ? 'CN=agentcell inspected address' : `CN=${host}`,
      issuer: ca.certificate.subject,
      notBefore: new Date(start.getTime() - BACKDATE_MS),
      notAfter: new Date(notAfter),
      signingKey: ca.privateKey,
      publicKey: keys.publicKey,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: ip ? 'ip' : 'dns', value: host }]),
        await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
      ],
    });
    const certPem = certificate.toString('pem');
    const keyPem = await leafKeyPem;
    cache?.save(host, certPem, keyPem);
    return leafServerContext(keyPem, certPem);
  }

  return {
    secureContext(host) {
      let context = contexts.get(host);
      if (!context) {
        const cached = cache?.context(host);
        context = cached ? Promise.resolve(cached) : mint(host);
        contexts.set(host, context);
        context.catch(() => contexts.delete(host));
      }
      return context;
    },
  };
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // positive
  return bytes.toString('hex');
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
