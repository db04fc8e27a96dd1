// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import assert from 'node:assert/strict';
import { createHash, webcrypto } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, isIP, type LookupFunction } from 'node:net';
import { connect, TLSSocket, type SecureContext } from 'node:tls';
import { after, describe, it } from 'node:test';
import { createLeafMinter, loadOrCreateCellCa, type CellCa } from '../src/egress/cell/cell-ca.js';
import { cellCaFiles, type CellCaFiles } from '../src/egress/cell/cell-trust.js';
import { openLeafCache } from '../src/egress/cell/leaf-cache.js';
import { makeCerts } from './make-certs.js';

const DAY_MS = 86_400_000;
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function caFiles(): CellCaFiles {
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-leaf-cache-'));
  dirs.push(dir);
  return cellCaFiles(join(dir, 'ca'));
}

function leafPath(files: CellCaFiles, host: string): string {
  return join(files.dir, 'leaves', `${createHash('sha256').update(host).digest('hex')}.pem`);
}

/** A CA certificate (pathlen 0) for `host`, issued by `ca`, followed by its own key. */
async function caForHost(ca: CellCa, host: string): Promise<string> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const now = Date.now();
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: '01',
    subject: `CN=${host}`,
    issuer: ca.certificate.subject,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 7 * DAY_MS),
    signingKey: ca.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: host }]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.certificate),
    ],
  });
  const key = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${key.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END PRIVATE KEY-----\n`;
  return `${certificate.toString('pem')}\n${keyPem}`;
}

/** Every name is the loopback here: the server is. */
const loopback: LookupFunction = (_host, options, callback) =>
  options.all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4);

/** The SHA-256 fingerprint of the certificate `context` serves for `host`, to a client trusting only `caPem`. */
async function served(context: SecureContext, host: string, caPem: string): Promise<string> {
  const server = createServer((plain) => {
    const socket = new TLSSocket(plain, { isServer: true, secureContext: context });
    socket.on('error', () => plain.destroy());
    socket.once('secure', () => socket.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  try {
    return await new Promise<string>((resolve, reject) => {
      const name = isIP(host) === 0 ? { servername: host } : {};
      const socket = connect({ host, port, ...name, ca: caPem, lookup: loopback }, () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.end();
      });
      socket.once('error', reject);
    });
  } finally {
    server.close();
  }
}

describe('cached leaves of the cell CA', () => {
  it('a minted leaf is kept beside the CA key (0600, named by a hash), and a later run serves it as it is', async () => {
    const files = caFiles();
    const ca = await loadOrCreateCellCa(files, 'test');
    const minter = createLeafMinter(ca, { cache: openLeafCache(files, ca.certPem) });
    const first = await served(await minter.secureContext('api.test'), 'api.test', ca.certPem);
    const ip = await served(await minter.secureContext('127.0.0.1'), '127.0.0.1', ca.certPem);
    for (const host of ['api.test', '127.0.0.1']) {
      const stat = statSync(leafPath(files, host));
      assert.equal(stat.mode & 0o777, 0o600, host);
    }
    assert.equal(statSync(join(files.dir, 'leaves')).mode & 0o777, 0o700);
    const later = openLeafCache(files, ca.certPem);
    const apiContext = later.context('api.test');
    const ipContext = later.context('127.0.0.1');
    assert.ok(apiContext && ipContext, 'both served from the cache');
    assert.equal(await served(apiContext, 'api.test', ca.certPem), first);
    assert.equal(await served(ipContext, '127.0.0.1', ca.certPem), ip);
    // A minter with the cache serves the same leaf, not a new one.
    const again = createLeafMinter(ca, { cache: later });
    assert.equal(await served(await again.secureContext('api.test'), 'api.test', ca.certPem), first);
  });

  it('serves a cached leaf only when it checks out: its host, this CA, its key, its dates, no CA; else it mints afresh', async () => {
    const files = caFiles();
    const ca = await loadOrCreateCellCa(files, 'test');
    const cache = openLeafCache(files, ca.certPem);
    await createLeafMinter(ca, { cache }).secureContext('api.test');
    const api = leafPath(files, 'api.test');
    const text = readFileSync(api, 'utf8');
    assert.ok(cache.context('api.test'), 'positive control');
    // Another host's leaf under this host's name.
    copyFileSync(api, leafPath(files, 'other.test'));
    assert.equal(cache.context('other.test'), undefined, 'a leaf for another name');
    // Its dates: a week's leaf with less than a day left, or one not valid yet.
    assert.equal(openLeafCache(files, ca.certPem, () => Date.now() + 6.5 * DAY_MS).context('api.test'), undefined);
    assert.equal(openLeafCache(files, ca.certPem, () => Date.now() - 2 * 3_600_000).context('api.test'), undefined);
    // Its key: the certificate with another key.
    const other = readFileSync(leafPath(files, 'other.test'), 'utf8');
    await createLeafMinter(ca, { cache }).secureContext('third.test');
    const thirdKey = readFileSync(leafPath(files, 'third.test'), 'utf8').replace(
      /^[\s\S]*?(?=-----BEGIN PRIVATE KEY)/,
      '',
    );
    writeFileSync(leafPath(files, 'other.test'), other.replace(/-----BEGIN PRIVATE KEY[\s\S]*$/, thirdKey));
    assert.equal(cache.context('other.test'), undefined, 'a key that is not the certificate’s');
    // A CA certificate for exactly this name, issued and signed by this CA, with its key and
    // good dates: only being a CA is wrong with it.
    writeFileSync(api, await caForHost(ca, 'api.test'));
    assert.equal(cache.context('api.test'), undefined, 'a CA certificate');
    // The cell CA itself (certificate and key) as the leaf.
    writeFileSync(api, `${ca.certPem}${readFileSync(files.key, 'utf8')}`);
    assert.equal(cache.context('api.test'), undefined, 'the cell CA');
    // A leaf for the name signed by another CA, with its key.
    const foreign = await makeCerts(files.dir, 'foreign', ['api.test']);
    writeFileSync(api, `${foreign.cert.toString()}\n${foreign.key.toString()}`);
    assert.equal(cache.context('api.test'), undefined, 'another CA’s leaf');
    writeFileSync(api, 'not a certificate');
    assert.equal(cache.context('api.test'), undefined, 'damaged');
    // Minted afresh and the file replaced: the next run serves that one.
    const minted = await served(
      await createLeafMinter(ca, { cache }).secureContext('api.test'),
      'api.test',
      ca.certPem,
    );
    assert.notEqual(readFileSync(api, 'utf8'), text);
    const next = cache.context('api.test');
    assert.ok(next);
    assert.equal(await served(next, 'api.test', ca.certPem), minted);
  });

  it('a new CA drops the cached leaves; an old leaf put back is not served under it', async () => {
    const files = caFiles();
    const old = await loadOrCreateCellCa(files, 'test');
    await createLeafMinter(old, { cache: openLeafCache(files, old.certPem) }).secureContext('api.test');
    const saved = readFileSync(leafPath(files, 'api.test'));
    // Past its renewal point: a new CA is made.
    const renewed = await loadOrCreateCellCa(files, 'test', new Date(Date.now() + 360 * DAY_MS));
    assert.notEqual(renewed.certPem, old.certPem);
    assert.equal(existsSync(join(files.dir, 'leaves')), false);
    const cache = openLeafCache(files, renewed.certPem);
    await createLeafMinter(renewed, { cache }).secureContext('second.test');
    writeFileSync(leafPath(files, 'api.test'), saved);
    assert.equal(cache.context('api.test'), undefined, 'the old CA’s leaf');
    assert.deepEqual(readdirSync(join(files.dir, 'leaves')).length, 2);
  });
});
