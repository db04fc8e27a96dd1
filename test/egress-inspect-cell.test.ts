import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeCerts } from './make-certs.js';
import {
  agentcellAsync,
  CLI,
  cellDirOf,
  listTree,
  makeSandbox,
  type CliResult,
  type Sandbox,
  listen,
} from './helpers.js';

/**
 * TLS inspection, L7 rules, proxy-injected secrets and spy from inside real bwrap cells.
 * The HTTPS servers listen on 127.0.0.1 with certificates from a test CA that only the
 * gateway trusts (`upstream_ca`); the cell trusts only its cell CA.
 */

const SECRET = 'sk-agentcell-real-9f8e7d6c5b4a39281706';

interface Seen {
  method: string;
  url: string;
  host: string;
  headers: IncomingHttpHeaders;
}

function runCli(args: string[], sb: Sandbox, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return agentcellAsync(sb, args, { env, timeoutMs: 90_000 });
}

function findFile(dir: string, name: string): string | undefined {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isFile() && entry.name === name) return path;
    if (entry.isDirectory()) {
      let found: string | undefined;
      try {
        found = findFile(path, name);
      } catch {
        continue; // overlayfs work dirs are mode 000
      }
      if (found) return found;
    }
  }
  return undefined;
}

/** `agentcell spy --follow --json --run RUN`: its first line, then SIGINT (it must stop on it). */
function followFirstLine(sb: Sandbox, run: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'spy', '--follow', '--json', '--run', run], {
      cwd: sb.workspace,
      env: sb.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) child.kill('SIGINT');
    });
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      if (status !== 0) reject(new Error(`spy --follow exited ${String(status)}: ${out}`));
      else resolve(out.split('\n')[0] ?? '');
    });
  });
}

/**
 * `agentcell spy --follow --raw --pager --run RUN` on a terminal (`script` makes one):
 * less shows the call live; Ctrl-C stops following, `q` then quits less and spy.
 */
function pagedFollow(sb: Sandbox, run: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const command = ['exec', process.execPath, CLI, 'spy', '--follow', '--raw', '--pager', '--run', run].join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      cwd: sb.workspace,
      env: { ...sb.env, TERM: 'xterm', LESSSECURE: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let typed = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (typed || !out.includes('claude-stub-1')) return;
      typed = true;
      child.stdin.write('\u0003');
      setTimeout(() => child.stdin.write('q'), 500);
    });
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      if (status !== 0) reject(new Error(`spy --follow --pager exited ${String(status)}: ${out}`));
      else resolve(out);
    });
  });
}

describe('inspected egress from a real cell (bwrap)', () => {
  let certDir: string;
  let upstreamCa: string;
  let trusted: Server;
  let untrusted: Server;
  let port: number;
  let badPort: number;
  const seen: Seen[] = [];

  function handler(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', headers: req.headers });
      if (req.url === '/v1/messages') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            model: 'claude-stub-1',
            content: [
              { type: 'text', text: 'Reading it.' },
              { type: 'tool_use', id: 't1', name: 'read_file', input: { path: 'README.md' } },
            ],
            usage: { input_tokens: 42, output_tokens: 9 },
            // A provider echoing the key it got: spy --raw must show it redacted.
            echoed_key: req.headers['x-api-key'],
          }),
        );
        return;
      }
      res.end(`hello ${req.method} ${req.url}\n`);
    });
  }

  before(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'agentcell-inspect-cell-'));
    const good = await makeCerts(certDir, 'good', ['api.test', 'second.test']);
    const bad = await makeCerts(certDir, 'bad', ['bad.test']);
    upstreamCa = good.ca;
    trusted = createHttpsServer({ key: good.key, cert: good.cert }, handler);
    untrusted = createHttpsServer({ key: bad.key, cert: bad.cert }, handler);
    [port, badPort] = await Promise.all([listen(trusted), listen(untrusted)]);
  });

  after(() => {
    for (const server of [trusted, untrusted]) {
      server.closeAllConnections();
      server.close();
    }
    rmSync(certDir, { recursive: true, force: true });
  });

  function sandbox(extra: string[]): Sandbox {
    const sb = makeSandbox();
    writeFileSync(
      join(sb.workspace, 'agentcell.toml'),
      [
        '[network]',
        'mode = "allowlist"',
        'allow = ["api.test", "second.test", "bad.test"]',
        'resolve = { "api.test" = "127.0.0.1", "second.test" = "127.0.0.1", "bad.test" = "127.0.0.1" }',
        `upstream_ca = [${JSON.stringify(upstreamCa)}]`,
        ...extra,
        '',
      ].join('\n'),
    );
    return sb;
  }

  function egressEvents(sb: Sandbox): Record<string, unknown>[] {
    const dir = join(cellDirOf(sb), 'egress');
    return readdirSync(dir)
      .filter((name) => name.endsWith('.jsonl') && !name.endsWith('.spy.jsonl'))
      .flatMap((name) => readFileSync(join(dir, name), 'utf8').trim().split('\n'))
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  it('curl in the cell trusts the cell CA (variables and the system bundle); Host ≠ SNI, untrusted upstreams refused', async () => {
    const sb = sandbox(['inspect = ["api.test", "second.test", "bad.test"]']);
    // Node as the cell sets it up for Claude Code, Gemini and Codex's node shim: `--use-openssl-ca` in
    // NODE_OPTIONS, trusting the cell's bundle (SSL_CERT_FILE), with no NODE_EXTRA_CA_CERTS to parse at start-up.
    writeFileSync(
      join(sb.workspace, 'probe.cjs'),
      [
        "const http = require('http'), tls = require('tls');",
        'const proxy = new URL(process.env.HTTPS_PROXY);',
        "const auth = Buffer.from(`${proxy.username}:${proxy.password}`).toString('base64');",
        `const target = 'api.test:${port}';`,
        "const r = http.request({ host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: target, headers: { 'proxy-authorization': 'Basic ' + auth } });",
        "r.on('connect', (_res, socket) => {",
        "  const t = tls.connect({ socket, servername: 'api.test' }, () => t.write(`GET /via-node HTTP/1.1\\r\\nHost: ${target}\\r\\nConnection: close\\r\\n\\r\\n`));",
        "  let body = ''; t.on('data', (d) => (body += d)); t.on('end', () => console.log('node: ' + body.split('\\r\\n')[0]));",
        "  t.on('error', (e) => console.log('node error: ' + e.code));",
        '});',
        'r.end();',
        '',
      ].join('\n'),
    );
    try {
      seen.length = 0;
      const r = await runCli(
        [
          ...['run', '--', 'sh', '-c'],
          [
            `curl -sS https://api.test:${port}/via-env`,
            // Tools that ignore the variables read the system bundle, which holds the cell CA too.
            `env -u CURL_CA_BUNDLE -u SSL_CERT_FILE curl -sS --cacert /etc/ssl/certs/ca-certificates.crt https://api.test:${port}/via-system-bundle`,
            `curl -sS -i -H "Host: second.test:${port}" https://api.test:${port}/smuggled | tr -d '\\r' | grep -i '^x-agentcell-denied'`,
            `curl -sS -i https://bad.test:${badPort}/ | tr -d '\\r' | grep -i '^x-agentcell-denied'`,
            'test -e /run/agentcell/ca.key || test -e "$HOME/ca.key" || echo no-ca-key-in-cell',
            'node probe.cjs',
            'echo "node-options=$NODE_OPTIONS extra-ca=${NODE_EXTRA_CA_CERTS:-unset}"',
          ].join('; '),
        ],
        sb,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^hello GET /via-env\\nhello GET /via-system-bundle\\n`));
      assert.match(r.stdout, /^X-Agentcell-Denied: host-mismatch$/im);
      assert.match(r.stdout, /^X-Agentcell-Denied: upstream-cert-invalid$/im);
      assert.match(r.stdout, /^no-ca-key-in-cell$/m);
      assert.match(r.stdout, /^node: HTTP\/1\.1 200 OK$/m);
      assert.match(r.stdout, /^node-options=--use-openssl-ca extra-ca=unset$/m);
      assert.deepEqual(
        seen.map((s) => s.url),
        ['/via-env', '/via-system-bundle', '/via-node'],
      );
      const events = egressEvents(sb).filter((e) => e['kind'] === 'request');
      const summary = events.map(
        (e) => `${String(e['method'])} ${String(e['path'])} ${String(e['status'])} ${String(e['reason'])}`,
      );
      assert.deepEqual(summary.sort(), [
        'GET / 502 upstream-cert-invalid',
        'GET /smuggled 403 host-mismatch',
        'GET /via-env 200 allow-rule',
        'GET /via-node 200 allow-rule',
        'GET /via-system-bundle 200 allow-rule',
      ]);
      for (const e of events.filter((e) => e['status'] === 200)) {
        assert.ok(Number(e['bytesDown']) > 0);
        assert.equal(typeof e['bytesUp'], 'number');
      }
      const ca = join(cellDirOf(sb), 'egress', 'ca');
      assert.equal(statSync(join(ca, 'ca.key')).mode & 0o777, 0o600);
      assert.equal(statSync(ca).mode & 0o777, 0o700);
    } finally {
      sb.cleanup();
    }
  });

  it('keeps the policy’s NODE_OPTIONS, with --use-openssl-ca after it, and node in the cell honours both', async () => {
    const sb = sandbox(['inspect = ["api.test"]', '[env]', 'NODE_OPTIONS = "--max-old-space-size=96"']);
    try {
      const heap =
        'console.log(require("v8").getHeapStatistics().heap_size_limit < 200 * 1024 * 1024 ? "small-heap" : "big-heap")';
      const r = await runCli(['run', '--', 'sh', '-c', `echo "options=$NODE_OPTIONS"; node -e '${heap}'`], sb);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^options=--max-old-space-size=96 --use-openssl-ca$/m);
      assert.match(r.stdout, /^small-heap$/m);
    } finally {
      sb.cleanup();
    }
  });

  it('applies [[network.rule]]: GET /ok passes; POST /ok and GET /other get a 403 with the reason', async () => {
    const sb = sandbox(['[[network.rule]]', 'host = "api.test"', 'methods = ["GET"]', 'paths = ["/ok", "/v1/*"]']);
    try {
      seen.length = 0;
      const base = `https://api.test:${port}`;
      const r = await runCli(
        [
          ...['run', '--', 'sh', '-c'],
          [
            `curl -sS -o /dev/null -w 'get-ok=%{http_code}\\n' ${base}/ok`,
            `curl -sS -o /dev/null -w 'post-ok=%{http_code}\\n' -X POST -d x ${base}/ok`,
            `curl -sS -D - -o /dev/null ${base}/other | tr -d '\\r' | grep -i '^x-agentcell-denied'`,
            `curl -sS ${base}/other`,
          ].join('; '),
        ],
        sb,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^get-ok=200$/m);
      assert.match(r.stdout, /^post-ok=403$/m);
      assert.match(r.stdout, /^X-Agentcell-Denied: no-matching-rule$/im);
      assert.match(r.stdout, /^agentcell: denied api\.test:\d+: no-matching-rule \(.*GET \/other/m);
      assert.deepEqual(
        seen.map((s) => `${s.method} ${s.url}`),
        ['GET /ok'],
      );
    } finally {
      sb.cleanup();
    }
  });

  it('a leaf minted in one run is served by the next from the cell CA’s cache (a damaged one is minted again), and the upstream’s CA is kept', async () => {
    const sb = sandbox(['inspect = ["api.test"]']);
    try {
      const fetch = async (): Promise<string> => {
        const r = await runCli(
          ['run', '--', 'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', `https://api.test:${port}/ok`],
          sb,
        );
        assert.equal(r.status, 0, r.stderr);
        return r.stdout;
      };
      assert.equal(await fetch(), '200');
      // The CA the upstream's chain ended in is kept beside the cell CA (upstream-trust.ts), nothing else.
      const anchors = join(cellDirOf(sb), 'egress', 'ca', 'upstream-anchors.pem');
      assert.equal(readFileSync(anchors, 'utf8').trim(), readFileSync(upstreamCa, 'utf8').trim());
      assert.equal(statSync(anchors).mode & 0o777, 0o600);
      const leaves = join(cellDirOf(sb), 'egress', 'ca', 'leaves');
      const [name, ...others] = readdirSync(leaves);
      assert.ok(name !== undefined && others.length === 0, `one leaf: ${readdirSync(leaves).join(', ')}`);
      const file = join(leaves, name);
      const first = readFileSync(file, 'utf8');
      const firstStat = statSync(file);
      assert.equal(firstStat.mode & 0o777, 0o600);
      assert.equal(await fetch(), '200');
      assert.equal(readFileSync(file, 'utf8'), first, 'served from the cache, not minted again');
      assert.equal(statSync(file).mtimeMs, firstStat.mtimeMs);
      writeFileSync(file, first.replace(/-----BEGIN PRIVATE KEY[\s\S]*$/, ''));
      assert.equal(await fetch(), '200');
      const again = readFileSync(file, 'utf8');
      assert.notEqual(again, first, 'minted again');
      assert.match(again, /-----BEGIN PRIVATE KEY-----/);
    } finally {
      sb.cleanup();
    }
  });

  it('a proxy-injected secret reaches only its host and never the cell, its logs, spy or receipt', async () => {
    const sb = sandbox([
      'inspect = ["second.test"]',
      '[secrets.ANTHROPIC_API_KEY]',
      'from = "env:HOST_ANTHROPIC_KEY"',
      'inject = "proxy"',
      'host = "api.test"',
      'header = "x-api-key"',
      '[secrets.GH]',
      'from = "env:HOST_ANTHROPIC_KEY"',
      'inject = "proxy"',
      'host = "api.test"',
      'header = "Authorization"',
      'template = "Bearer {value}"',
    ]);
    try {
      seen.length = 0;
      const hostEnv = { HOST_ANTHROPIC_KEY: SECRET };
      const body = JSON.stringify({
        model: 'claude-stub-1',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'read the readme' }],
      });
      writeFileSync(join(sb.workspace, 'body.json'), body);
      const r = await runCli(
        [
          ...['run', '--', 'sh', '-c'],
          [
            // The cell tries to set the headers itself: replaced for api.test.
            `curl -sS -H "x-api-key: $ANTHROPIC_API_KEY" -H "Authorization: Bearer cell-made" -H 'content-type: application/json' --data @body.json https://api.test:${port}/v1/messages >/dev/null`,
            `curl -sS -H "Authorization: Bearer cell-made" https://second.test:${port}/other-host >/dev/null`,
            'echo "key=$ANTHROPIC_API_KEY gh=$GH"',
            'echo ===',
            'env',
            'tr "\\0" "\\n" </proc/self/environ',
            'cat /proc/[0-9]*/cmdline | tr "\\0" " "',
            'echo ===',
            // Every readable file a process in the cell could look at (the bridge's node binary aside),
            // into a file (the run's overlay layer): megabytes on stdout would outrun the test's pipe.
            `find "$PWD" "$HOME" /tmp /run /etc/ssl -xdev -type f -size -4M -readable ! -name dump.bin -exec cat {} + >dump.bin 2>/dev/null`,
            'echo dumped',
          ].join('; '),
        ],
        sb,
        hostEnv,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^key=agentcell-proxy-injected-ANTHROPIC_API_KEY gh=agentcell-proxy-injected-GH$/m);
      assert.ok(!r.stdout.includes(SECRET), 'the secret is nowhere in the cell (env, environ, argv)');
      assert.ok(!r.stderr.includes(SECRET));
      const dump = findFile(cellDirOf(sb), 'dump.bin');
      assert.ok(dump, 'the dump is in the run layer');
      const files = readFileSync(dump);
      assert.ok(files.includes('BEGIN CERTIFICATE'), 'positive control: the dump read the cell CA bundle');
      assert.ok(files.includes('read the readme'), 'positive control: the dump read the workspace');
      assert.ok(!files.includes(SECRET), 'the secret is in no readable file of the cell');
      const caKey = readFileSync(join(cellDirOf(sb), 'egress', 'ca', 'ca.key'), 'utf8');
      const keyBody = caKey.split('\n').slice(1, 3).join('\n');
      assert.ok(keyBody.length > 40 && !files.includes(keyBody), 'the cell CA key is in no readable file of the cell');

      const api = seen.find((s) => s.url === '/v1/messages');
      assert.equal(api?.headers['x-api-key'], SECRET, 'the server got the real key');
      assert.equal(api?.headers['authorization'], `Bearer ${SECRET}`, 'template applied, cell header replaced');
      const other = seen.find((s) => s.url === '/other-host');
      assert.equal(other?.headers['authorization'], 'Bearer cell-made', 'another inspected host never gets it');
      assert.equal(other?.headers['x-api-key'], undefined);

      const egressDir = join(cellDirOf(sb), 'egress');
      for (const name of readdirSync(egressDir).filter((n) => n.endsWith('.jsonl'))) {
        const text = readFileSync(join(egressDir, name), 'utf8');
        assert.ok(!text.includes(SECRET), `${name} lacks the secret`);
        assert.equal(statSync(join(egressDir, name)).mode & 0o777, 0o600);
      }
      const receipt = await runCli(['receipt', 'show', '--format', 'json'], sb);
      assert.equal(receipt.status, 0, receipt.stderr);
      assert.ok(!receipt.stdout.includes(SECRET));
      assert.match(receipt.stdout, /ANTHROPIC_API_KEY/, 'the variable name is listed in the receipt');
      const before = listTree(sb.root);
      const dry = await runCli(['run', '--dry-run', '--', 'true'], sb, hostEnv);
      const dryJson = await runCli(['run', '--dry-run', '--json', '--', 'true'], sb, hostEnv);
      assert.equal(dry.status, 0, dry.stderr);
      assert.ok(!(dry.stdout + dry.stderr + dryJson.stdout + dryJson.stderr).includes(SECRET));
      assert.match(
        dry.stdout,
        /proxy secrets ANTHROPIC_API_KEY → api\.test \(x-api-key\), GH → api\.test \(Authorization\)/,
      );
      const plan = JSON.parse(dryJson.stdout) as { inspection: { inspect: string[]; secrets: { name: string }[] } };
      assert.deepEqual(plan.inspection.inspect, ['second.test']);
      assert.deepEqual(
        plan.inspection.secrets.map((x) => x.name),
        ['ANTHROPIC_API_KEY', 'GH'],
      );
      assert.deepEqual(listTree(sb.root), before, 'a dry run writes nothing');

      // spy renders the stub Anthropic call, with no header and no secret.
      const spy = await runCli(['spy'], sb);
      assert.equal(spy.status, 0, spy.stderr);
      assert.match(spy.stdout, /anthropic claude-stub-1 POST api\.test\/v1\/messages → 200/);
      assert.match(spy.stdout, /user: read the readme/);
      assert.match(spy.stdout, /→ assistant: Reading it\./);
      assert.match(spy.stdout, /→ assistant: tool call read_file \{"path":"README\.md"\}/);
      assert.match(spy.stdout, /tokens: in 42, out 9/);
      const spyJson = await runCli(['spy', '--json'], sb);
      const parsed = JSON.parse(spyJson.stdout) as {
        run: string;
        calls: { model: string; usage: { input: number } }[];
      };
      assert.equal(parsed.calls[0]?.model, 'claude-stub-1');
      assert.equal(parsed.calls[0]?.usage.input, 42);
      assert.ok(!(spy.stdout + spyJson.stdout).includes(SECRET));
      // spy --raw: the bodies as recorded, JSON pretty-printed; the echoed key redacted, never shown.
      const raw = await runCli(['spy', '--raw'], sb);
      assert.equal(raw.status, 0, raw.stderr);
      assert.match(raw.stdout, /── request \(application\/json\)\n\{\n {2}"model": "claude-stub-1",/);
      assert.match(raw.stdout, /"role": "user",\n\s*"content": "read the readme"/);
      assert.match(raw.stdout, /── response \(application\/json\)\n[^]*"text": "Reading it\."/);
      assert.match(raw.stdout, /"echoed_key": "\[redacted:(ANTHROPIC_API_KEY|GH)\]"/, 'the provider did echo it');
      const rawJson = await runCli(['spy', '--raw', '--json'], sb);
      const rawCalls = (
        JSON.parse(rawJson.stdout) as { calls: { request: { body: string }; response: { body: string } }[] }
      ).calls;
      assert.equal((JSON.parse(rawCalls[0]?.request.body ?? '') as { model: string }).model, 'claude-stub-1');
      assert.match(rawCalls[0]?.response.body ?? '', /"input_tokens":42/);
      const paged = await runCli(['spy', '--raw', '--pager'], sb);
      assert.equal(paged.stdout, raw.stdout, '--pager on a pipe prints plainly');
      assert.ok(!(raw.stdout + rawJson.stdout + paged.stdout).includes(SECRET));
      // Following a named run reads it from the start (without --run, follow waits for the next run).
      const follow = await followFirstLine(sb, parsed.run);
      assert.match(follow, /"model":"claude-stub-1"/);
      const pagedLive = await pagedFollow(sb, parsed.run);
      assert.match(pagedLive, /\u001b\[\?1049h/, 'less took the terminal');
      assert.match(pagedLive, /"model": "claude-stub-1"/);
      assert.ok(!pagedLive.includes(SECRET));
    } finally {
      sb.cleanup();
    }
  });

  it('refuses proxy secrets without the gateway, and a missing upstream_ca file, naming the key', async () => {
    const sb = makeSandbox();
    try {
      writeFileSync(
        join(sb.workspace, 'agentcell.toml'),
        '[secrets.K]\nfrom = "env:K"\ninject = "proxy"\nhost = "api.test"\nheader = "x-api-key"\n',
      );
      const noSpy = await runCli(['spy', '--json'], sb);
      assert.equal(noSpy.status, 2);
      assert.match(noSpy.stdout, /"code": "SPY_LOG_NOT_FOUND"/);
      const badRun = await runCli(['spy', '--run', '../../etc/passwd'], sb);
      assert.equal(badRun.status, 2);
      assert.match(badRun.stderr, /not a run id/);
      const none = await runCli(['run', '--network', 'none', '--', 'true'], sb, { K: 'v' });
      assert.equal(none.status, 2);
      assert.match(none.stderr, /secrets\.K\.inject = "proxy" need network\.mode = "allowlist"/);
      writeFileSync(
        join(sb.workspace, 'agentcell.toml'),
        '[network]\nmode = "allowlist"\ninspect = ["api.test"]\nupstream_ca = ["missing-ca.crt"]\n',
      );
      const missing = await runCli(['run', '--', 'true'], sb);
      assert.equal(missing.status, 2);
      assert.match(missing.stderr, /network\.upstream_ca: cannot read "missing-ca\.crt" \(ENOENT\)/);
      writeFileSync(
        join(sb.workspace, 'agentcell.toml'),
        '[network]\nmode = "allowlist"\n[[network.rule]]\nhost = "api.test"\nmethods = ["get"]\npaths = ["v1"]\n',
      );
      const bad = await runCli(['run', '--', 'true'], sb);
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /network\.rule\.0\.methods\.0.*upper-case HTTP method/);
      assert.match(bad.stderr, /network\.rule\.0\.paths\.0.*starting with "\/"/);
    } finally {
      sb.cleanup();
    }
  });
});
