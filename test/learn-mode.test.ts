import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { compileHostRules, learningMatcher } from '../src/egress/rules/host-rules.js';
import { makeCerts } from './make-certs.js';
import { agentcellAsync, listen, makeSandbox, startCli, waitFor, type CliResult, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS } from './backends-under-test.js';

/**
 * `--network learn` end to end: the cell reaches hosts its allow list lacks (through the
 * same gateway as `allowlist`), each logged as learned with the decision the allow list
 * would have made; blocked addresses stay blocked; `allow --from-log` turns what was
 * reached into allow entries. Loopback only: the test hosts are `resolve` names.
 */

interface LoggedEvent {
  run: string;
  host: string;
  port: number;
  decision: 'allow' | 'deny';
  reason: string;
  wouldBe?: { decision: string; reason: string; rule: string | null };
}

function fileHash(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function egressEvents(out: string): LoggedEvent[] {
  return out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as LoggedEvent);
}

describe('learningMatcher', () => {
  it('relaxes only the missing allow entry: deny entries and invalid hosts still refuse', () => {
    const allowlist = compileHostRules({ allow: ['a.test'], deny: ['*.evil.test', 'b.test:22'] });
    const learning = learningMatcher(allowlist);
    // Positive control: the allow list alone refuses what learning allows.
    assert.equal(allowlist.decide('c.test', 443).reason, 'not-allowed');
    assert.deepEqual(learning.decide('c.test', 443), { decision: 'allow', rule: null, reason: 'learned' });
    assert.equal(allowlist.decide('a.test', 80, { cleartext: true }).reason, 'cleartext-not-allowed');
    assert.equal(learning.decide('a.test', 80, { cleartext: true }).reason, 'learned');
    assert.deepEqual(learning.decide('a.test', 443), allowlist.decide('a.test', 443));
    for (const [host, port, reason] of [
      ['x.evil.test', 443, 'deny-rule'],
      ['b.test', 22, 'deny-rule'],
      ['bad host', 443, 'invalid-host'],
      ['c.test', 0, 'invalid-host'],
    ] as const) {
      const decision = learning.decide(host, port);
      assert.equal(decision.decision, 'deny', host);
      assert.equal(decision.reason, reason, host);
    }
    // The address guard's input is untouched: loopback is listed only where the policy lists it.
    assert.equal(learning.listsAddress('127.0.0.1', 443, 'c.test'), false);
  });
});

for (const backend of TEST_BACKENDS)
  describe(`agentcell run --network learn (${backend})`, () => {
    let sb: Sandbox;
    let certDir: string;
    let servers: Server[];
    let aPort: number;
    let bPort: number;
    let policyFile: string;

    const cli = (args: string[]): Promise<CliResult> => agentcellAsync(sb, args);
    const inCell = (network: string, script: string, extra: string[] = []): Promise<CliResult> =>
      cli(['run', ...backendArgs(backend), '--network', network, ...extra, '--', 'sh', '-c', script]);
    // Both hosts over HTTPS, and two loopback destinations no allow list names: an IP literal and `localhost`.
    const probes = (): string =>
      [
        `curl -sS --cacert test-ca.crt https://a.test:${aPort}/; echo "a=$?"`,
        `curl -sS --cacert test-ca.crt https://b.test:${bPort}/; echo "b=$?"`,
        // NO_PROXY cleared: curl would otherwise skip the proxy for these and fail without a network (exit 7).
        `NO_PROXY= no_proxy= curl -sS -k https://127.0.0.1:${aPort}/; echo "ip=$?"`,
        `NO_PROXY= no_proxy= curl -sS -k https://localhost:${aPort}/; echo "localhost=$?"`,
      ].join('; ');

    before(async () => {
      prepareBackend(backend);
      certDir = mkdtempSync(join(tmpdir(), 'agentcell-learn-ca-'));
      const certs = await makeCerts(certDir, 'agentcell', ['a.test', 'b.test', 'localhost', '127.0.0.1']);
      const serve = (name: string): Server =>
        createHttpsServer({ key: certs.key, cert: certs.cert }, (_req, res) => res.end(`hello from ${name}\n`));
      servers = [serve('a'), serve('b')];
      aPort = await listen(servers[0] as Server);
      bPort = await listen(servers[1] as Server);
      sb = makeSandbox();
      copyFileSync(certs.ca, join(sb.workspace, 'test-ca.crt'));
      policyFile = join(sb.workspace, 'agentcell.toml');
      // No allow entries: only where the names go (resolve targets count as listed addresses).
      writeFileSync(policyFile, '[network]\nresolve = { "a.test" = "127.0.0.1", "b.test" = "127.0.0.1" }\n');
    });
    after(() => {
      for (const server of servers) {
        server.close();
        server.closeAllConnections();
      }
      sb.cleanup();
      rmSync(certDir, { recursive: true, force: true });
    });

    it('control: --network allowlist refuses both hosts, which the allow list lacks', async () => {
      const r = await inCell('allowlist', probes());
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^a=56$/m);
      assert.match(r.stdout, /^b=56$/m);
      assert.doesNotMatch(r.stdout, /hello from/);
      const log = await cli(['egress', 'log', '--json']);
      const events = egressEvents(log.stdout);
      assert.ok(events.some((e) => e.host === 'a.test' && e.decision === 'deny' && e.reason === 'not-allowed'));
      assert.ok(
        events.every((e) => e.decision === 'deny' && e.wouldBe === undefined),
        log.stdout,
      );
    });

    it('reaches both, logs them as learned (would be denied), keeps loopback blocked, and is labeled', async () => {
      const r = await inCell('learn', probes(), ['--mode', 'development']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /hello from a\na=0\nhello from b\nb=0\n/);
      // Learning never opens the host's loopback: an address the policy doesn't list is still refused.
      assert.match(r.stdout, /^ip=56$/m);
      assert.match(r.stdout, /^localhost=56$/m);
      assert.match(r.stderr, /network learn · assurance reduced \(.*network learn \(/);

      const log = await cli(['egress', 'log', '--json']);
      const events = egressEvents(log.stdout);
      for (const [host, port] of [
        ['a.test', aPort],
        ['b.test', bPort],
      ] as const) {
        const event = events.find((e) => e.host === host);
        assert.ok(event, log.stdout);
        assert.equal(event.port, port);
        assert.equal(event.decision, 'allow');
        assert.equal(event.reason, 'learned');
        assert.deepEqual(event.wouldBe, { decision: 'deny', reason: 'not-allowed', rule: null });
      }
      for (const host of ['127.0.0.1', 'localhost']) {
        const event = events.find((e) => e.host === host);
        assert.ok(event, log.stdout);
        assert.equal(event.decision, 'deny');
        assert.equal(event.reason, 'blocked-address');
        assert.equal(event.wouldBe, undefined);
      }
      const text = await cli(['egress', 'log']);
      assert.match(
        text.stdout,
        new RegExp(`learn\\s+connect\\s+a\\.test:${aPort}\\s+127\\.0\\.0\\.1\\s+would be denied: not-allowed`),
      );

      const receipt = await cli(['receipt', 'show', '--format', 'json']);
      assert.equal(receipt.status, 0, receipt.stderr);
      // The gateway-deny canary has nothing to prove in learn mode: skipped, not a warning.
      assert.match(receipt.stdout, /"probe": ?"gateway-deny",\s*"result": ?"skipped"/);
      assert.doesNotMatch(receipt.stdout, /inconclusive/);
      assert.match(receipt.stdout, /network learn \(hosts outside the allowlist are reached and logged, not refused\)/);
      const dry = await cli([
        'run',
        ...backendArgs(backend),
        '--network',
        'learn',
        '--mode',
        'development',
        '--dry-run',
        '--',
        'true',
      ]);
      assert.equal(dry.status, 0, dry.stderr);
      assert.match(dry.stdout + dry.stderr, /assurance reduced \(.*network learn \(hosts outside the allowlist/);
    });

    it('allow --from-log --dry-run prints the entries and the diff and changes nothing', async () => {
      const hash = fileHash(policyFile);
      const r = await cli(['allow', '--from-log', '--dry-run']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /learned 2 host\(s\)/);
      assert.match(r.stdout, new RegExp(`would add to .*agentcell\\.toml: a\\.test:${aPort}, b\\.test:${bPort}`));
      assert.match(r.stdout, new RegExp(`^\\+.*"a\\.test:${aPort}"`, 'm'));
      const json = await cli(['allow', '--from-log', '--dry-run', '--json']);
      const result = JSON.parse(json.stdout) as { learned: string[]; added: string[]; dryRun: boolean };
      assert.deepEqual(result.learned, [`a.test:${aPort}`, `b.test:${bPort}`]);
      assert.equal(result.dryRun, true);
      assert.equal(fileHash(policyFile), hash);
    });

    it('allow --from-log writes them, and an allowlist run then reaches both', async () => {
      const r = await cli(['allow', '--from-log']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(readFileSync(policyFile, 'utf8'), new RegExp(`"a\\.test:${aPort}",?\\s*"b\\.test:${bPort}"`));
      const again = await cli(['allow', '--from-log', '--json']);
      assert.deepEqual((JSON.parse(again.stdout) as { learned: string[] }).learned, []);

      const run = await inCell('allowlist', probes());
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /hello from a\na=0\nhello from b\nb=0\n/);
      assert.match(run.stdout, /^ip=56$/m);
    });

    it('mode strict refuses learn mode, from the flag and from agentcell.toml, before any cell starts', async () => {
      const r = await inCell('learn', 'echo ran', ['--mode', 'strict']);
      assert.notEqual(r.status, 0);
      assert.doesNotMatch(r.stdout, /ran/);
      assert.match(
        r.stderr,
        /mode "strict" refuses .*\n\s+network\.mode = "learn" \(from command line\); use "allowlist"/,
      );

      const before = readFileSync(policyFile, 'utf8');
      writeFileSync(policyFile, before.replace('[network]\n', '[network]\nmode = "learn"\n'));
      try {
        const fromFile = await cli(['run', ...backendArgs(backend), '--mode', 'strict', '--', 'echo', 'ran']);
        assert.notEqual(fromFile.status, 0);
        assert.doesNotMatch(fromFile.stdout, /ran/);
        assert.match(fromFile.stderr, /network\.mode = "learn" \(from .*agentcell\.toml\)/);
      } finally {
        writeFileSync(policyFile, before);
      }
    });

    it('a reload never turns a running allowlist cell into a learning one', async () => {
      const original = readFileSync(policyFile, 'utf8');
      const withMode = (mode: string): string => original.replace('[network]\n', `[network]\nmode = "${mode}"\n`);
      writeFileSync(policyFile, withMode('allowlist'));
      const args = ['run', ...backendArgs(backend), '--mode', 'development', '--', 'sh', '-c', 'echo ready; sleep 3'];
      const child = startCli(args, { cwd: sb.workspace, env: sb.env });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      try {
        await waitFor('the run', () => out.includes('ready'));
        // Positive control: the same reload from an unchanged policy goes through.
        const same = await cli(['allow']);
        assert.equal(same.status, 0, same.stderr);
        writeFileSync(policyFile, withMode('learn'));
        const r = await cli(['allow']);
        assert.equal(r.status, 2, r.stdout);
        assert.match(r.stderr, /network\.mode is now "learn": a reload never widens/);
      } finally {
        writeFileSync(policyFile, original);
      }
      assert.equal(await exited, 0);
    });
  });
