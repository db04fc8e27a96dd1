import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CELL_CA_BUNDLE, CELL_CA_CERT, trustEnvironment } from '../src/egress/cell/cell-trust.js';

/**
 * How node in an inspecting cell trusts the cell CA. NODE_EXTRA_CA_CERTS would make every
 * node process parse a root store at start-up; `--use-openssl-ca` reads the cell's bundle at
 * the first TLS connection. Either way node must trust the cell CA, and the cell's own
 * NODE_OPTIONS must survive.
 */
describe("node's trust in an inspecting cell", () => {
  const curlAndFriends = {
    SSL_CERT_FILE: CELL_CA_BUNDLE,
    REQUESTS_CA_BUNDLE: CELL_CA_BUNDLE,
    CURL_CA_BUNDLE: CELL_CA_BUNDLE,
    GIT_SSL_CAINFO: CELL_CA_BUNDLE,
  };

  it('with a system bundle: --use-openssl-ca added to the cell’s NODE_OPTIONS as given, once, and no NODE_EXTRA_CA_CERTS', () => {
    assert.deepEqual(trustEnvironment({ systemBundle: true }), { ...curlAndFriends, NODE_OPTIONS: '--use-openssl-ca' });
    assert.deepEqual(
      trustEnvironment({ systemBundle: true, nodeOptions: ' --max-old-space-size=4096  --enable-source-maps' }),
      {
        ...curlAndFriends,
        NODE_OPTIONS: ' --max-old-space-size=4096  --enable-source-maps --use-openssl-ca',
      },
    );
    assert.equal(
      trustEnvironment({ systemBundle: true, nodeOptions: '--use-openssl-ca' })['NODE_OPTIONS'],
      '--use-openssl-ca',
    );
  });

  it('without a system bundle (the bundle is the cell CA alone), or with --use-bundled-ca: NODE_EXTRA_CA_CERTS, NODE_OPTIONS left alone', () => {
    assert.deepEqual(trustEnvironment({ systemBundle: false }), {
      ...curlAndFriends,
      NODE_EXTRA_CA_CERTS: CELL_CA_CERT,
    });
    assert.deepEqual(trustEnvironment({ systemBundle: true, nodeOptions: '--use-bundled-ca' }), {
      ...curlAndFriends,
      NODE_EXTRA_CA_CERTS: CELL_CA_CERT,
    });
  });

  it('the NODE_OPTIONS it makes is one node starts with (a malformed one would stop every node in the cell)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-trust-env-'));
    try {
      const bundle = join(dir, 'bundle.pem');
      writeFileSync(bundle, '');
      const env = trustEnvironment({ systemBundle: true, nodeOptions: '--max-old-space-size=256' });
      const r = spawnSync(process.execPath, ['-e', 'console.log("ok")'], {
        env: { PATH: process.env['PATH'], NODE_OPTIONS: env['NODE_OPTIONS'], SSL_CERT_FILE: bundle },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /ok/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
