import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCerts } from './make-certs.js';
import { agentcellAsync, cellDirOf, listTree, makeSandbox, type CliResult, type Sandbox, listen } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS, type TestBackend } from './backends-under-test.js';

/**
 * `--network allowlist` end to end on every backend under test: the cell reaches test servers on the
 * host's loopback only through the gateway. Nothing here contacts a non-loopback address.
 */

/** Async, unlike helpers' agentcell(): the test servers live in this process's event loop. */
function runCli(args: string[], sb: Sandbox, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return agentcellAsync(sb, args, { env });
}

function inGatewayCell(
  backend: TestBackend,
  sb: Sandbox,
  script: string,
  env: NodeJS.ProcessEnv = {},
): Promise<CliResult> {
  return runCli(['run', ...backendArgs(backend), '--network', 'allowlist', '--', 'sh', '-c', script], sb, env);
}

for (const backend of TEST_BACKENDS)
  describe(`agentcell run --network allowlist (${backend})`, () => {
    let sb: Sandbox;
    let certDir: string;
    let https: Server;
    let http: Server;
    let httpsPort: number;
    let httpPort: number;

    before(async () => {
      prepareBackend(backend);
      certDir = mkdtempSync(join(tmpdir(), 'agentcell-ca-'));
      const certs = await makeCerts(certDir, 'agentcell', ['api.test']);
      https = createHttpsServer({ key: certs.key, cert: certs.cert }, (_req, res) => res.end('hello from api.test\n'));
      http = createHttpServer((_req, res) => res.end('plain hello\n'));
      httpsPort = await listen(https);
      httpPort = await listen(http);
      sb = makeSandbox();
      // *.pem is masked in a cell by default: the CA goes in as .crt.
      copyFileSync(certs.ca, join(sb.workspace, 'test-ca.crt'));
      writeFileSync(
        join(sb.workspace, 'agentcell.toml'),
        [
          '[network]',
          `allow = ["api.test", "plain.test:${httpPort}", "localhost:${httpPort}"]`,
          'resolve = { "api.test" = "127.0.0.1", "plain.test" = "127.0.0.1" }',
          '',
        ].join('\n'),
      );
    });
    after(() => {
      https.close();
      http.close();
      https.closeAllConnections();
      http.closeAllConnections();
      sb.cleanup();
      rmSync(certDir, { recursive: true, force: true });
    });

    it('reaches an allowed name through the gateway (HTTPS and listed cleartext) and counts it in the receipt', async () => {
      const r = await inGatewayCell(
        backend,
        sb,
        [
          `curl -sS --cacert test-ca.crt https://api.test:${httpsPort}/`,
          `curl -sS http://plain.test:${httpPort}/`,
          `curl -sS -i http://other.test:${httpPort}/`,
        ].join('; '),
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^hello from api\.test\nplain hello\nHTTP\/1\.1 403 /);
      assert.match(r.stdout, /^X-Agentcell-Denied: not-allowed\r?$/im);
      const show = await runCli(['receipt', 'show', '--format', 'json'], sb);
      assert.equal(show.status, 0, show.stderr);
      const receipt = JSON.parse(show.stdout) as { egress: { allowed: number; denied: number } };
      assert.deepEqual(receipt.egress, { allowed: 2, denied: 1 });
    });

    it('prints no node warning (MaxListenersExceededWarning) on a run with many connections through the gateway', async () => {
      // More connections of each kind than node's default of 10 listeners per emitter, one after another and at once.
      const each = [
        `curl -sS -o /dev/null --cacert test-ca.crt https://api.test:${httpsPort}/`,
        `curl -sS -o /dev/null http://plain.test:${httpPort}/`,
        `curl -sS -o /dev/null http://other.test:${httpPort}/`,
        `curl -sS -o /dev/null https://other.test:${httpsPort}/ 2>/dev/null`,
      ].join('; ');
      const r = await inGatewayCell(
        backend,
        sb,
        `for i in $(seq 12); do ${each}; done; for i in $(seq 12); do (${each}) & done; wait; echo done`,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^done$/m);
      assert.doesNotMatch(r.stderr, /Warning|MaxListeners/, r.stderr);

      // Control: a warning raised in agentcell's own process does reach this stderr.
      const leak = join(certDir, 'leak-listeners.cjs');
      writeFileSync(
        leak,
        "const e = new (require('node:events'))(); for (let i = 0; i < 11; i++) e.on('x', () => {});\n",
      );
      const control = await inGatewayCell(backend, sb, 'true', { NODE_OPTIONS: `--require ${leak}` });
      assert.equal(control.status, 0, control.stderr);
      assert.match(control.stderr, /MaxListenersExceededWarning/);
    });

    it('refuses unlisted names over HTTPS too, and a listed name that resolves to loopback (rebinding guard)', async () => {
      const r = await inGatewayCell(
        backend,
        sb,
        [
          `curl -sS --cacert test-ca.crt https://other.test:${httpsPort}/; echo "tls=$?"`,
          // localhost is allowed by name, but it resolves to loopback, which the policy does not list.
          `NO_PROXY= no_proxy= curl -sS -i http://localhost:${httpPort}/ | tr -d '\\r' | grep -i '^x-agentcell-denied'`,
        ].join('; '),
      );
      assert.match(r.stdout, /^tls=56$/m);
      assert.match(r.stderr, /403/);
      assert.match(r.stdout, /^X-Agentcell-Denied: blocked-address$/im);
    });

    it('has no way around the gateway: direct connections to the host loopback fail', async () => {
      const r = await inGatewayCell(
        backend,
        sb,
        [
          `curl -sS --noproxy '*' --cacert test-ca.crt https://127.0.0.1:${httpsPort}/; echo "curl=$?"`,
          `curl -sS --noproxy '*' http://127.0.0.1:${httpPort}/; echo "curl=$?"`,
          `node -e 'const s = require("net").connect(${httpPort}, "127.0.0.1"); s.on("connect", () => { console.log("node=connected"); process.exit(0); }); s.on("error", (e) => { console.log("node=" + e.code); })'`,
        ].join('; '),
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^curl=7\ncurl=7\nnode=ECONNREFUSED$/m);
      assert.doesNotMatch(r.stdout, /hello/);
    });

    it('puts the token only in the proxy variables, and nothing of the host environment', async () => {
      const r = await inGatewayCell(
        backend,
        sb,
        'env; echo ===; tr "\\0" "\\n" </proc/self/environ; echo ===; cat /proc/[0-9]*/cmdline | tr "\\0" " "',
        { SECRET_TOKEN: 'hunter2-host-secret', GITHUB_TOKEN: 'ghp_hostsecret' },
      );
      assert.equal(r.status, 0, r.stderr);
      const [env = '', environ = '', cmdlines = ''] = r.stdout.split('===\n');
      assert.doesNotMatch(r.stdout, /hunter2|ghp_hostsecret|SECRET_TOKEN|GITHUB_TOKEN/);
      const token = /^AGENTCELL_PROXY_TOKEN=(.+)$/m.exec(env)?.[1];
      assert.ok(token && token.length >= 20, env);
      const proxyNames = new Set([
        'HTTP_PROXY',
        'HTTPS_PROXY',
        'http_proxy',
        'https_proxy',
        'ALL_PROXY',
        'all_proxy',
        'npm_config_proxy',
        'npm_config_https_proxy',
        'AGENTCELL_PROXY_TOKEN',
      ]);
      for (const listing of [env, environ]) {
        const vars = listing
          .trim()
          .split('\n')
          .filter((l) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(l));
        const withToken: string[] = vars.filter((l) => l.includes(token)).map((l) => l.slice(0, l.indexOf('=')));
        assert.deepEqual(new Set(withToken), proxyNames);
        for (const line of vars.filter((l) => l.includes(token) && !l.startsWith('AGENTCELL_PROXY_TOKEN=')))
          assert.match(line, /^\w+=(http|socks5h):\/\/agentcell:[\w-]+@127\.0\.0\.1:3128$/);
      }
      assert.ok(!cmdlines.includes(token), 'the token is in no process argv');
      // The cell gets a new token every run.
      const again = await inGatewayCell(backend, sb, 'echo "$AGENTCELL_PROXY_TOKEN"');
      assert.notEqual(again.stdout.trim(), token);
    });

    it('fails closed when the gateway cannot finish starting beside the cell: the command never runs', async () => {
      // The gateway's control socket (`agentcell allow`) comes up after the cell has started;
      // a control directory others may write stops it there.
      const first = await inGatewayCell(backend, sb, 'echo COMMAND-RAN');
      assert.equal(first.status, 0, first.stderr);
      const control = join(cellDirOf(sb), 'egress', 'control');
      mkdirSync(control, { recursive: true });
      chmodSync(control, 0o777);
      try {
        const r = await inGatewayCell(backend, sb, 'echo COMMAND-RAN');
        assert.notEqual(r.status, 0);
        assert.doesNotMatch(r.stdout, /COMMAND-RAN/);
        assert.match(r.stderr, /egress\/control is not a private directory of this user/);
      } finally {
        chmodSync(control, 0o700);
      }
      const ok = await inGatewayCell(backend, sb, 'echo COMMAND-RAN');
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, /COMMAND-RAN/);
    });

    it('--dry-run starts nothing, writes nothing and prints no token', async () => {
      const before = listTree(sb.root);
      const r = await runCli(
        ['run', ...backendArgs(backend), '--dry-run', '--network', 'allowlist', '--', 'curl', 'https://api.test/'],
        sb,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout + r.stderr, /\/run\/agentcell\/egress\.sock/);
      assert.match(r.stdout + r.stderr, /HTTPS_PROXY/);
      assert.doesNotMatch(r.stdout + r.stderr, /agentcell:[\w-]{16,}@/);
      const json = await runCli(
        ['run', ...backendArgs(backend), '--dry-run', '--json', '--allow', 'api.test', '--', 'true'],
        sb,
      );
      assert.equal(json.status, 0, json.stderr);
      assert.doesNotMatch(json.stdout, /agentcell:[\w-]{16,}@/);
      assert.deepEqual(listTree(sb.root), before);
    });
  });
