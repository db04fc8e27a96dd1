import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { createLeafMinter, loadOrCreateCellCa } from '../src/egress/cell/cell-ca.js';
import { cellCaFiles } from '../src/egress/cell/cell-trust.js';
import { createEgressGateway } from '../src/egress/gateway/egress-gateway.js';
import { newProxyToken, proxyAuthorization } from '../src/egress/gateway/proxy-auth.js';
import { fmt } from './measure.js';
import type { Section } from './startup.js';

/**
 * TLS inspection (issue 4): the cost of the per-cell CA, of minting a leaf per host and
 * of serving a cached one, and the latency of one HTTPS request on a new connection
 * through the gateway, spliced vs inspected, against a loopback server. In process,
 * interleaved. Knob: BENCH_INSPECT_RUNS (default 40).
 */
export async function inspectBench(): Promise<Section> {
  const runs = Number(process.env['BENCH_INSPECT_RUNS'] ?? 40);
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-bench-inspect-'));
  try {
    let started = performance.now();
    const ca = await loadOrCreateCellCa(cellCaFiles(join(dir, 'cell')), 'bench');
    const caMs = performance.now() - started;

    const minter = createLeafMinter(ca);
    await minter.secureContext('warm.test');
    const firstMint: number[] = [];
    const cached: number[] = [];
    for (let i = 0; i < runs; i++) {
      started = performance.now();
      await minter.secureContext(`host-${i}.test`);
      firstMint.push(performance.now() - started);
      started = performance.now();
      await minter.secureContext(`host-${i}.test`);
      cached.push(performance.now() - started);
    }

    // The "real" server's CA, trusted by the gateway upstream and by the client for the spliced path.
    const upstreamCa = await loadOrCreateCellCa(cellCaFiles(join(dir, 'upstream')), 'upstream');
    const upstreamLeaves = createLeafMinter(upstreamCa);
    const server: Server = createHttpsServer(
      {
        SNICallback: (name, callback) =>
          void upstreamLeaves.secureContext(name).then(
            (context) => callback(null, context),
            (error: Error) => callback(error, undefined),
          ),
      },
      (_req, res) => res.end('ok'),
    );
    const port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        resolve(typeof address === 'object' && address ? address.port : 0);
      }),
    );
    const token = newProxyToken();
    const gateway = createEgressGateway({
      rules: {
        allow: ['plain.test', 'inspected.test'],
        resolve: { 'plain.test': '127.0.0.1', 'inspected.test': '127.0.0.1' },
        inspect: ['inspected.test'],
      },
      token,
      tcp: { host: '127.0.0.1', port: 0 },
      inspect: { leaves: minter, upstreamCa: [upstreamCa.certPem] },
    });
    const gatewayPort = (await gateway.listen()).tcp?.port ?? 0;
    const trust = [ca.certPem, upstreamCa.certPem];
    const once = (host: string): Promise<number> =>
      timedRequest({ gatewayPort, token, host, port, trust }).catch((error: Error) => {
        throw new Error(`bench request to ${host} failed: ${error.message}`);
      });
    await once('plain.test');
    await once('inspected.test');
    const spliced: number[] = [];
    const inspected: number[] = [];
    for (let i = 0; i < runs; i++) {
      spliced.push(await once('plain.test'));
      inspected.push(await once('inspected.test'));
    }
    await gateway.close();
    server.closeAllConnections();
    server.close();

    const m = (samples: number[]): number => median(samples);
    const extra = m(inspected) - m(spliced);
    const rows = [
      '| step | median ms | p90 ms |',
      '| --- | --- | --- |',
      `| cell CA, made once per cell (ECDSA P-256) | ${fmt(caMs)} | – |`,
      `| leaf for a new host (mint + SecureContext) | ${fmt(m(firstMint))} | ${fmt(p90(firstMint))} |`,
      `| leaf for a host seen before (cache) | ${fmt(m(cached))} | ${fmt(p90(cached))} |`,
      `| HTTPS request, new connection, spliced tunnel | ${fmt(m(spliced))} | ${fmt(p90(spliced))} |`,
      `| HTTPS request, new connection, inspected | ${fmt(m(inspected))} | ${fmt(p90(inspected))} |`,
    ];
    return {
      title: 'TLS inspection',
      markdown: [
        `${runs} rounds, interleaved, in process; loopback server with its own CA. An inspected request`,
        'costs a second TLS handshake (gateway to upstream) and the leaf, which is minted once per host.',
        '',
        ...rows,
      ].join('\n'),
      verdicts: [
        `inspection adds ${fmt(extra)} ms per new connection (median), a cached leaf ${fmt(m(cached))} ms: ${extra < 10 ? 'met' : 'missed'} (target: < 10 ms)`,
      ],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** CONNECT through the gateway, TLS to `host`, one GET, the whole response: milliseconds. */
function timedRequest(options: {
  gatewayPort: number;
  token: string;
  host: string;
  port: number;
  trust: string[];
}): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const connect = httpRequest({
      host: '127.0.0.1',
      port: options.gatewayPort,
      method: 'CONNECT',
      path: `${options.host}:${options.port}`,
      headers: { 'proxy-authorization': proxyAuthorization(options.token) },
    });
    connect.once('error', reject);
    connect.once('connect', (response, socket) => {
      if (response.statusCode !== 200) return reject(new Error(`CONNECT ${response.statusCode}`));
      const tls = tlsConnect({ socket, servername: options.host, ca: options.trust, ALPNProtocols: ['http/1.1'] });
      tls.once('error', reject);
      tls.once('secureConnect', () => {
        tls.write(`GET / HTTP/1.1\r\nHost: ${options.host}:${options.port}\r\nConnection: close\r\n\r\n`);
      });
      let body = '';
      tls.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      tls.once('end', () => {
        tls.destroy();
        if (!body.startsWith('HTTP/1.1 200')) reject(new Error(body.split('\r\n')[0]));
        else resolve(performance.now() - started);
      });
    });
    connect.end();
  });
}

function median(samples: number[]): number {
  return quantile(samples, 0.5);
}

function p90(samples: number[]): number {
  return quantile(samples, 0.9);
}

function quantile(samples: number[], q: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return (sorted[lo] ?? 0) + ((sorted[hi] ?? 0) - (sorted[lo] ?? 0)) * (pos - lo);
}
