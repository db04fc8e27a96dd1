// `npm run build`: loads the X.509 bundle through its loader (argv[2]) with
// AGENTCELL_WRITE_CODE_CACHE=1 and does what a run that inspects TLS does with it (make a
// cell CA, read it back, mint a leaf), so the code cache written at exit holds those functions.
'use strict';
const { webcrypto } = require('node:crypto');

const x509 = require(process.argv[2]);
x509.cryptoProvider.set(webcrypto);
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

async function main() {
  const caKeys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=agentcell build CA, O=agentcell',
    notBefore: new Date(now),
    notAfter: new Date(now + 86_400_000),
    keys: caKeys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', caKeys.privateKey));
  const keyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
  const loaded = new x509.X509Certificate(ca.toString('pem'));
  const der = x509.PemConverter.decodeFirst(keyPem);
  const signingKey = await webcrypto.subtle.importKey('pkcs8', der, ALGORITHM, false, ['sign']);
  const leafKeys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '02',
    subject: 'CN=example.com',
    issuer: loaded.subject,
    notBefore: new Date(now),
    notAfter: new Date(Math.min(now + 3_600_000, loaded.notAfter.getTime())),
    signingKey,
    publicKey: leafKeys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'example.com' }]),
      await x509.AuthorityKeyIdentifierExtension.create(loaded),
    ],
  });
  if (!leaf.toString('pem').includes('BEGIN CERTIFICATE')) throw new Error('the X.509 bundle minted no certificate');
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exitCode = 1;
});
