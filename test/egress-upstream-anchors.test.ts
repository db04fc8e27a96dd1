import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, rootCertificates, type SecureContext } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { createLeafMinter, loadOrCreateCellCa } from '../src/egress/cell/cell-ca.js';
import { cellCaFiles } from '../src/egress/cell/cell-trust.js';
import type { EgressGateway } from '../src/egress/gateway/egress-gateway.js';
import { upstreamAnchorsFile, upstreamTrust } from '../src/egress/gateway/upstream-trust.js';
import { listen } from './helpers.js';
import { makeCerts } from './make-certs.js';
import { startTestGateway } from './test-gateway.js';

/*
 * The upstream CAs a cell's gateway remembers (upstream-trust.ts): real TLS servers signed by
 * test CAs on loopback, real curl through the gateway. What is remembered may only narrow the
 * trust: an upstream the whole store refuses stays refused, whatever the anchors file says.
 */

const RESOLVE = { 'a.test': '127.0.0.1', 'b.test': '127.0.0.1', 'evil.test': '127.0.0.1' };

let dir: string;
let caA: string;
let caB: string;
let caEvil: string;
/** What the gateway trusts: node's roots, then the two test CAs (as a policy's upstream_ca adds them). */
let store: string[];
let cellTrust: string;
const servers: Server[] = [];
const ports: Record<'a' | 'b' | 'evil', number> = { a: 0, b: 0, evil: 0 };
const gateways: EgressGateway[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'agentcell-anchors-'));
  const certs = {
    a: await makeCerts(dir, 'a', ['a.test']),
    b: await makeCerts(dir, 'b', ['b.test']),
    evil: await makeCerts(dir, 'evil', ['evil.test']),
  };
  caA = readFileSync(certs.a.ca, 'utf8');
  caB = readFileSync(certs.b.ca, 'utf8');
  caEvil = readFileSync(certs.evil.ca, 'utf8');
  store = [...rootCertificates, `${caA}${caB}`];
  for (const name of ['a', 'b', 'evil'] as const) {
    const server = createServer({ key: certs[name].key, cert: certs[name].cert }, (_req, res) => res.end('ok\n'));
    servers.push(server);
    ports[name] = await listen(server);
  }
  const ca = await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell-ca')), 'test');
  cellTrust = join(dir, 'cell-trust.pem');
  writeFileSync(cellTrust, ca.certPem);
});

after(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A gateway inspecting every test host, remembering its anchors in `anchorsPath`. */
async function gatewayWith(anchorsPath: string): Promise<{ port: number; token: string }> {
  const ca = await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell-ca')), 'test');
  const gw = await startTestGateway(dir, {
    rules: { resolve: RESOLVE, allow: Object.keys(RESOLVE), inspect: Object.keys(RESOLVE) },
    inspect: {
      leaves: createLeafMinter(ca),
      upstreamCa: store,
      upstreamAnchors: upstreamAnchorsFile(anchorsPath),
      secrets: [],
    },
  });
  gateways.push(gw.gateway);
  return gw;
}

/** curl through the gateway, trusting only the cell CA: '200', or what refused it. */
function fetch(gw: { port: number; token: string }, name: keyof typeof ports): Promise<string> {
  return new Promise((resolve) => {
    execFile(
      'curl',
      [
        ...['-sS', '--max-time', '10', '-x', `http://127.0.0.1:${gw.port}`, '--proxy-user', `agentcell:${gw.token}`],
        ...['-D', '-', '-o', '/dev/null', '-w', 'status %{http_code}'],
        ...['--cacert', cellTrust, `https://${name}.test:${ports[name]}/`],
      ],
      { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 20_000 },
      (_error, stdout, stderr) => {
        const denied = /^X-Agentcell-Denied: (.*?)\r?$/im.exec(stdout)?.[1];
        const status = /status (\d+)$/.exec(stdout)?.[1];
        resolve(denied ? `denied ${denied}` : status === '200' ? status : `failed ${status ?? ''} ${stderr.trim()}`);
      },
    );
  });
}

/** Whether a TLS client verifying with `context` accepts the server for `name`. */
function verifies(context: SecureContext, name: keyof typeof ports): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port: ports[name],
      servername: `${name}.test`,
      secureContext: context,
    });
    socket.once('secureConnect', () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('upstream anchors: the CAs earlier upstreams chained to, tried first', () => {
  it('a run verifies against every CA and keeps the one the chain ended in; the next tries only those, then every CA', async () => {
    const anchors = join(dir, 'kept.pem');
    assert.equal(await fetch(await gatewayWith(anchors), 'a'), '200');
    assert.equal(readFileSync(anchors, 'utf8').trim(), caA.trim(), 'only the CA a.test chained to');
    assert.equal(statSync(anchors).mode & 0o777, 0o600);
    // What the next gateway tries first holds that CA and nothing else of the store.
    const first = upstreamTrust(store, upstreamAnchorsFile(anchors)).first();
    assert.equal(first.partial, true);
    assert.equal(await verifies(first.context, 'a'), true, 'positive control');
    assert.equal(await verifies(first.context, 'b'), false, 'b.test’s CA is not in it');
    // b.test does not verify against it: tried again with every CA, served, and its CA kept too.
    const next = await gatewayWith(anchors);
    assert.equal(await fetch(next, 'b'), '200');
    assert.equal(await fetch(next, 'a'), '200');
    assert.equal(readFileSync(anchors, 'utf8').trim(), `${caA.trim()}\n${caB.trim()}`);
    // Without anchors there is nothing partial to try.
    assert.equal(upstreamTrust(store).first().partial, false);
  });

  it('a CA planted in the anchors file that the store does not hold is never trusted, and a refusal keeps nothing', async () => {
    const anchors = join(dir, 'planted.pem');
    const planted = `${caEvil.trim()}\n${caA.trim()}\n`;
    writeFileSync(anchors, planted);
    const first = upstreamTrust(store, upstreamAnchorsFile(anchors)).first();
    assert.equal(first.partial, true, 'a.test’s CA is still in the store');
    assert.equal(await verifies(first.context, 'evil'), false, 'the planted CA is not in the first context');
    assert.equal(await verifies(first.context, 'a'), true, 'positive control');
    const gw = await gatewayWith(anchors);
    assert.equal(await fetch(gw, 'evil'), 'denied upstream-cert-invalid');
    assert.equal(await fetch(gw, 'a'), '200');
    assert.equal(readFileSync(anchors, 'utf8'), planted, 'the file is as it was');
    // Only planted CAs: nothing partial, every CA decides (and refuses).
    writeFileSync(anchors, caEvil);
    assert.equal(upstreamTrust(store, upstreamAnchorsFile(anchors)).first().partial, false);
    assert.equal(await fetch(await gatewayWith(anchors), 'evil'), 'denied upstream-cert-invalid');
    assert.equal(readFileSync(anchors, 'utf8'), caEvil);
  });

  it('an unreadable or damaged anchors file means every CA, as with none', async () => {
    const damaged = join(dir, 'damaged.pem');
    writeFileSync(damaged, '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n');
    assert.equal(upstreamTrust(store, upstreamAnchorsFile(damaged)).first().partial, false);
    assert.equal(await fetch(await gatewayWith(damaged), 'a'), '200');
    assert.equal(readFileSync(damaged, 'utf8').trim(), caA.trim(), 'replaced by what verified');
    const missing = join(dir, 'no-such-dir', 'anchors.pem');
    assert.equal(await fetch(await gatewayWith(missing), 'a'), '200', 'a file it cannot write only loses the cache');
  });
});
