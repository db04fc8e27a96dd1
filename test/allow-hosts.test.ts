import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AllowHostsResult } from '../src/cell/allow-hosts.js';
import type { Receipt } from '../src/receipts/receipt.js';
import { acJson, agentcellAsync, makeSandbox, startCli, type Sandbox } from './helpers.js';

/**
 * `agentcell allow HOST…` end to end on bwrap: the host-side agentcell.toml gains the
 * entries (the rest of the file kept byte for byte), a running cell is reloaded and can
 * reach the new host, and the reload lands in its receipt. a.test / b.test are a
 * loopback server, named through `[network] resolve`.
 */

describe('agentcell allow HOST… (bwrap, a running cell)', () => {
  let sb: Sandbox;
  let server: Server;
  let port: number;
  let policyText: string;
  const policyFile = (): string => join(sb.workspace, 'agentcell.toml');

  before(async () => {
    server = createServer((_req, res) => res.end('ok\n'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    sb = makeSandbox();
    policyText = [
      '# The project’s egress policy.',
      '[network]',
      'mode = "allowlist"',
      'allow = [',
      `  "a.test:${port}", # the API`,
      ']',
      'resolve = { "a.test" = "127.0.0.1", "b.test" = "127.0.0.1" }',
      '',
      '[env]',
      'GREETING = "hi" # kept',
      '',
    ].join('\n');
    writeFileSync(policyFile(), policyText);
  });
  after(() => {
    server.close();
    server.closeAllConnections();
    sb.cleanup();
  });

  it('shows the diff on a dry run, refuses a bare *, then adds the host and reloads the running cell', async () => {
    const child = startCli(
      [
        'run',
        '--',
        'sh',
        '-c',
        [
          'i=0; while [ $i -lt 1200 ]; do',
          `  b=$(curl -s -o /dev/null -w '%{http_code}' http://b.test:${port}/)`,
          '  echo "tick b=$b"; [ "$b" = 200 ] && break',
          '  i=$((i+1)); sleep 0.05',
          'done',
        ].join('\n'),
      ],
      { cwd: sb.workspace, env: sb.env },
    );
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.resume();
    const done = new Promise<number | null>((resolve) => child.on('close', resolve));
    const until = Date.now() + 60_000;
    while (!out.includes('tick b=403') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /tick b=403/);

    const dry = await agentcellAsync(sb, ['allow', '--dry-run', '--json', `b.test:${port}`, `a.test:${port}`]);
    assert.equal(dry.status, 0, dry.stderr);
    const plan = JSON.parse(dry.stdout) as AllowHostsResult;
    assert.deepEqual(plan.added, [`b.test:${port}`]);
    assert.deepEqual(plan.present, [`a.test:${port}`]);
    assert.equal(plan.cells.length, 1);
    assert.deepEqual(plan.reloads, []);
    assert.ok(plan.diff.includes(`+  "b.test:${port}",`), plan.diff.join('\n'));
    assert.deepEqual(
      plan.diff.filter((line) => /^[-+](?![-+]{2} )/.test(line)),
      [`+  "b.test:${port}",`],
      'one line added, none removed',
    );
    assert.equal(readFileSync(policyFile(), 'utf8'), policyText, 'a dry run writes nothing');

    const star = await agentcellAsync(sb, ['allow', '--json', '*']);
    assert.equal(star.status, 2);
    assert.equal((JSON.parse(star.stdout) as { error: { code: string } }).error.code, 'USAGE');
    assert.equal(readFileSync(policyFile(), 'utf8'), policyText);
    assert.ok(!out.includes('tick b=200'), 'nothing widened so far');

    const added = await agentcellAsync(sb, ['allow', `b.test:${port}`]);
    assert.equal(added.status, 0, added.stderr);
    assert.match(added.stdout, new RegExp(`^added to .*agentcell\\.toml: b\\.test:${port}$`, 'm'));
    assert.match(added.stdout, new RegExp(`^cell \\S+: \\+ allow b\\.test:${port}$`, 'm'));
    assert.equal(
      readFileSync(policyFile(), 'utf8'),
      policyText.replace(`# the API\n]`, `# the API\n  "b.test:${port}",\n]`),
      'only the new entry was added',
    );
    assert.equal(await done, 0);
    assert.match(out, /tick b=200/);

    const receipt = acJson<Receipt>(sb, 'receipt', 'show', '--latest', '--format', 'json');
    assert.deepEqual(
      receipt.egress.reloads?.map((r) => r.added.allow),
      [[`b.test:${port}`]],
    );
  });

  it('edits the file when no cell is running, and says the next run reads it', async () => {
    const r = await agentcellAsync(sb, ['allow', 'c.test']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /no cell of this workspace is running; the next run reads the file/);
    const json = await agentcellAsync(sb, ['allow', '--json', 'c.test']);
    const result = JSON.parse(json.stdout) as AllowHostsResult;
    assert.deepEqual([result.added, result.present, result.cells], [[], ['c.test'], []]);
    assert.match(readFileSync(policyFile(), 'utf8'), /^ {2}"c\.test",$/m);
  });
});
