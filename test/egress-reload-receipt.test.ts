import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Receipt } from '../src/receipts/receipt.js';
import {
  ac,
  acJson,
  agentcellAsync,
  cellDirOf,
  makeSandbox,
  startCli,
  type Sandbox,
  waitFor,
  writeAllowlistPolicy,
} from './helpers.js';

/**
 * `agentcell allow` on a running bwrap cell is recorded in that run's signed receipt:
 * each applied reload with its time, requester, new policy hash and what it widened or
 * narrowed; also when agentcell is killed and the run is receipted as interrupted.
 * The cell reaches a loopback server named a.test / b.test through `[network] resolve`.
 */

interface Live {
  stdout: () => string;
  done: Promise<number | null>;
  kill: () => void;
}

function live(sb: Sandbox, script: string): Live {
  const child = startCli(['run', '--', 'sh', '-c', script], { cwd: sb.workspace, env: sb.env });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.resume();
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const done = new Promise<number | null>((resolve) =>
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve(status);
    }),
  );
  return { stdout: () => out, done, kill: () => child.kill('SIGKILL') };
}

function latest(sb: Sandbox): Receipt {
  return acJson<Receipt>(sb, 'receipt', 'show', '--latest', '--format', 'json');
}

describe('allowlist reloads in the receipt (bwrap, a running cell)', () => {
  let sb: Sandbox;
  let server: Server;
  let port: number;
  const user = userInfo().username;

  const policy = (allow: string[]): void => writeAllowlistPolicy(sb, allow);

  /** The cell polls b.test and stops after it has seen it allowed and then refused again. */
  const loop = (): string =>
    [
      'seen=0; i=0',
      'while [ $i -lt 1200 ]; do',
      `  b=$(curl -s -o /dev/null -w '%{http_code}' http://b.test:${port}/)`,
      '  echo "tick b=$b"',
      '  [ "$b" = 200 ] && seen=1',
      '  [ $seen = 1 ] && [ "$b" = 403 ] && break',
      '  i=$((i+1)); sleep 0.05',
      'done',
    ].join('\n');

  before(async () => {
    server = createServer((_req, res) => res.end('ok\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    sb = makeSandbox();
  });
  after(() => {
    server.close();
    server.closeAllConnections();
    sb.cleanup();
  });

  it('records each applied reload (not dry runs) in the signed receipt and renders it', async () => {
    policy([`a.test:${port}`]);
    const run = live(sb, loop());
    await waitFor('the first tick', () => run.stdout().includes('tick b=403'));

    policy([`a.test:${port}`, `b.test:${port}`]);
    const dry = await agentcellAsync(sb, ['allow', '--dry-run', '--json']);
    assert.equal(dry.status, 0, dry.stderr);
    const widen = await agentcellAsync(sb, ['allow', '--json']);
    assert.equal(widen.status, 0, widen.stderr);
    const widened = JSON.parse(widen.stdout) as { policyHash: string; by: { user: string; pid: number } };
    await waitFor('b.test allowed', () => run.stdout().includes('tick b=200'));

    policy([`a.test:${port}`]);
    writeFileSync(
      join(sb.workspace, 'agentcell.toml'),
      readFileSync(join(sb.workspace, 'agentcell.toml'), 'utf8') + `deny = ["b.test"]\n`,
    );
    const narrow = await agentcellAsync(sb, ['allow']);
    assert.equal(narrow.status, 0, narrow.stderr);
    assert.match(narrow.stdout, /^ {2}policy sha256:[0-9a-f]{64} \(recorded in the run’s receipt\)$/m);
    assert.equal(await run.done, 0);

    const receipt = latest(sb);
    const reloads = receipt.egress.reloads ?? [];
    assert.equal(reloads.length, 2, 'two applied reloads; the dry run is not one');
    const [first, second] = reloads;
    assert.ok(first && second);
    assert.deepEqual(first.added, { allow: [`b.test:${port}`], deny: [], resolve: [] });
    assert.deepEqual(first.removed, { allow: [], deny: [], resolve: [] });
    assert.equal(first.policyHash, widened.policyHash);
    assert.notEqual(first.policyHash, receipt.policy.hash, 'the receipt keeps the hash the run started with');
    assert.deepEqual(first.by, widened.by);
    assert.equal(first.by.user, user);
    assert.deepEqual(first.files, [join(sb.workspace, 'agentcell.toml')]);
    assert.deepEqual(second.added, { allow: [], deny: ['b.test'], resolve: [] });
    assert.deepEqual(second.removed, { allow: [`b.test:${port}`], deny: [], resolve: [] });
    assert.notEqual(second.policyHash, first.policyHash);
    assert.ok(Date.parse(receipt.startedAt) <= Date.parse(first.time));
    assert.ok(Date.parse(first.time) <= Date.parse(second.time));
    assert.ok(Date.parse(second.time) <= Date.parse(receipt.endedAt));

    const md = ac(sb, 'receipt', 'show', '--latest', '--format', 'md');
    assert.equal(md.status, 0, md.stderr);
    assert.match(md.stdout, /^### Allowlist reloads$/m);
    assert.match(
      md.stdout,
      new RegExp(`^- \\S+ by ${user} \\(pid \\d+\\): policy \`${first.policyHash}\`, 0 open`, 'm'),
    );
    assert.match(md.stdout, new RegExp(`^ {2}- \\+ allow \`b\\.test:${port}\` \\(widened\\)$`, 'm'));
    assert.match(md.stdout, /^ {2}- \+ deny `b\.test` \(narrowed\)$/m);
    assert.match(md.stdout, new RegExp(`^ {2}- − allow \`b\\.test:${port}\` \\(narrowed\\)$`, 'm'));

    assert.deepEqual(acJson(sb, 'receipt', 'verify', '--json'), { ok: true, checked: 1, problems: [] });
    // The signature covers the reloads: hiding one breaks verification.
    const dir = join(cellDirOf(sb), 'receipts');
    const file = join(
      dir,
      readdirSync(dir).find((n) => n.includes(receipt.id))!,
    );
    const stored = readFileSync(file, 'utf8');
    const tampered = JSON.parse(stored) as Receipt;
    tampered.egress.reloads = tampered.egress.reloads?.slice(0, 1);
    writeFileSync(file, JSON.stringify(tampered, null, 2));
    const bad = ac(sb, 'receipt', 'verify', '--json');
    assert.notEqual(bad.status, 0);
    assert.equal((JSON.parse(bad.stdout) as { ok: boolean }).ok, false, bad.stdout);
    writeFileSync(file, stored);
    assert.equal(ac(sb, 'receipt', 'verify', '--json').status, 0);
  });

  it('a run with no reload has no reloads field; a killed run keeps its reloads in the interrupted receipt', async () => {
    policy([`a.test:${port}`]);
    const quiet = await agentcellAsync(sb, ['run', '--', 'true']);
    assert.equal(quiet.status, 0, quiet.stderr);
    assert.equal(latest(sb).egress.reloads, undefined);

    const run = live(sb, `echo ready; ${loop()}; sleep 60`);
    await waitFor('the run', () => run.stdout().includes('tick b=403'));
    policy([`a.test:${port}`, `b.test:${port}`]);
    const widen = await agentcellAsync(sb, ['allow', '--json']);
    assert.equal(widen.status, 0, widen.stderr);
    await waitFor('b.test allowed', () => run.stdout().includes('tick b=200'));
    run.kill();
    await run.done;

    // The next run finds the killed one and receipts it as interrupted, from its journal.
    const next = await agentcellAsync(sb, ['run', '--', 'true']);
    assert.equal(next.status, 0, next.stderr);
    const rows = acJson<{ id: string; status: string }[]>(sb, 'receipt', 'list', '--json');
    const killed = rows.filter((r) => r.status === 'interrupted');
    assert.equal(killed.length, 1, JSON.stringify(rows));
    const receipt = acJson<Receipt>(sb, 'receipt', 'show', killed[0]!.id, '--format', 'json');
    assert.equal(receipt.egress.reloads?.length, 1);
    assert.deepEqual(receipt.egress.reloads?.[0]?.added.allow, [`b.test:${port}`]);
    assert.equal(acJson<{ ok: boolean }>(sb, 'receipt', 'verify', '--json').ok, true);
  });
});
