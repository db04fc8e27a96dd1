import { AgentcellError } from '../errors.js';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../_internal/canonical-hash.js';
import { createFileAtomic, ensureDir, writeFileAtomic } from '../_internal/atomic-file.js';

/** The key this host signs receipts with. */
export interface SigningKey {
  keyId: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Where the private key lives (mode 0600). */
  path: string;
}

/** keyId → public key, for verifying receipts. */
export type PublicKeyRing = ReadonlyMap<string, KeyObject>;

export function keyPaths(configDir: string): { dir: string; privateKey: string; publicKey: string; trusted: string } {
  const dir = join(configDir, 'keys');
  return {
    dir,
    privateKey: join(dir, 'receipts-ed25519.pem'),
    publicKey: join(dir, 'receipts-ed25519.pub'),
    trusted: join(dir, 'trusted'),
  };
}

/** First 16 hex digits of sha256 of the public key's SPKI DER encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  return sha256(publicKey.export({ type: 'spki', format: 'der' })).slice(0, 16);
}

/**
 * The receipt signing key under `<configDir>/keys/`, created on first use: the private
 * key (PKCS#8 PEM, mode 0600, in a 0700 directory) appears whole or not at all, and an
 * existing key is never replaced, even when two processes create one at once.
 */
export function loadOrCreateSigningKey(configDir: string): SigningKey {
  const paths = keyPaths(configDir);
  if (!existsSync(paths.privateKey)) {
    ensureDir(paths.dir, 0o700);
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
    // false: another process created one first; use theirs.
    createFileAtomic(paths.privateKey, pem, 0o600);
  }
  const key = readSigningKey(paths.privateKey);
  const publicPem = key.publicKey.export({ type: 'spki', format: 'pem' });
  if (readText(paths.publicKey) !== publicPem) writeFileAtomic(paths.publicKey, publicPem, 0o644);
  return key;
}

function readSigningKey(path: string): SigningKey {
  const stat = statSync(path);
  if (process.platform !== 'win32' && (stat.mode & 0o077) !== 0)
    throw new AgentcellError(
      'SIGNING_KEY_INVALID',
      `the receipt signing key ${path} is readable by other users (mode ${(stat.mode & 0o777).toString(8)}); ` +
        `if nobody else could have read it: chmod 600 ${path}; otherwise move it away and agentcell makes a new one`,
    );
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(readFileSync(path));
  } catch (cause) {
    throw new AgentcellError('SIGNING_KEY_INVALID', `cannot read the receipt signing key ${path}: ${String(cause)}`, {
      cause,
    });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new AgentcellError(
      'SIGNING_KEY_INVALID',
      `${path} is a ${privateKey.asymmetricKeyType ?? 'non-asymmetric'} key, expected ed25519; move it away and agentcell makes a new one`,
    );
  const publicKey = createPublicKey(privateKey);
  return { keyId: keyIdOf(publicKey), privateKey, publicKey, path };
}

/**
 * The public keys receipts may be signed with: this host's current key (derived from
 * the private key when it is there, else read from the `.pub` beside it) and every
 * `<configDir>/keys/trusted/*.pub` (SPKI PEM), which is where a rotated-out key or
 * another host's key goes. Unreadable trusted files are skipped. Creates nothing.
 */
export function loadPublicKeys(configDir: string): PublicKeyRing {
  const paths = keyPaths(configDir);
  const keys: KeyObject[] = [];
  if (existsSync(paths.privateKey)) keys.push(readSigningKey(paths.privateKey).publicKey);
  else {
    const current = parsePublicKey(readText(paths.publicKey));
    if (current) keys.push(current);
  }
  let trusted: string[] = [];
  try {
    trusted = readdirSync(paths.trusted).filter((name) => name.endsWith('.pub'));
  } catch {
    // no trusted keys
  }
  for (const name of trusted.sort()) {
    const key = parsePublicKey(readText(join(paths.trusted, name)));
    if (key) keys.push(key);
  }
  return publicKeyRing(keys);
}

export function publicKeyRing(keys: Iterable<KeyObject>): PublicKeyRing {
  const ring = new Map<string, KeyObject>();
  for (const key of keys) if (key.asymmetricKeyType === 'ed25519') ring.set(keyIdOf(key), key);
  return ring;
}

function parsePublicKey(pem: string | null): KeyObject | null {
  if (pem === null) return null;
  try {
    return createPublicKey(pem);
  } catch {
    return null;
  }
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
