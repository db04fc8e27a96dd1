import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { backendArgs } from './backends-under-test.js';
import {
  ac,
  acJson,
  agentcell,
  cellDirOf,
  makeSandbox,
  startCli,
  writeAllowlistPolicy,
  type Sandbox,
} from './helpers.js';

/** Screenshots of each page, kept as test artifacts (gitignored). */
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'ui');
const XSS_NAME = '<img src=x onerror=alert(1)>.txt';

interface Launched {
  child: ChildProcess;
  url: string;
  port: number;
  token: string;
}

/** `agentcell ui --json` as a child process; resolves with what it printed. */
async function launchUi(sb: Sandbox): Promise<Launched> {
  const child = startCli(['ui', '--json'], { cwd: sb.workspace, env: sb.env });
  let out = '';
  const printed = await new Promise<{ url: string; port: number }>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      try {
        resolve(JSON.parse(out) as { url: string; port: number });
      } catch {
        // not all of it yet
      }
    });
    child.on('exit', (code) => reject(new Error(`agentcell ui exited ${String(code)}: ${out}`)));
  });
  const token = new URL(printed.url).searchParams.get('token')!;
  return { child, ...printed, token };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw request (node:http, so Host and Origin can be anything, as an attacker's would be). */
function raw(
  port: number,
  path: string,
  headers: Record<string, string>,
  options: { method?: string; body?: string; address?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: options.address ?? '127.0.0.1', port, path, method: options.method ?? 'GET', headers },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Whether anything accepts a TCP connection at address:port. */
function accepts(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

/** The local addresses listening on `port`, from the kernel's own table (/proc/net/tcp and tcp6). */
function listeningAddresses(port: number): string[] {
  const found: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (!local || state !== '0A') continue; // 0A: LISTEN
      const [hex, portHex] = local.split(':');
      if (parseInt(portHex!, 16) !== port) continue;
      found.push(
        hex!.length === 8
          ? (hex!.match(/../g) ?? [])
              .reverse()
              .map((b) => parseInt(b, 16))
              .join('.')
          : `ipv6:${hex!}`,
      );
    }
  }
  return found;
}

describe('agentcell ui', () => {
  let sb: Sandbox;
  let ui: Launched;
  let browser: Browser;
  let page: Page;
  let cell: string;
  const dialogs: string[] = [];

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    sb = makeSandbox({ 'keep.txt': 'first\nold line\nlast\n' });
    const run = ac(
      sb,
      'run',
      ...backendArgs('bwrap'),
      '--',
      'sh',
      '-c',
      // Added, modified, binary and control-plane (.envrc: direnv runs it) changes for the diff page.
      `echo one > one.txt; echo two > two.txt; echo xss > '${XSS_NAME}'; printf 'first\\nnew line\\nlast\\nadded\\n' > keep.txt; printf 'a\\0b' > blob.bin; echo 'echo hi' > .envrc`,
    );
    assert.equal(run.status, 0, run.stderr);
    cell = acJson<{ name: string }[]>(sb, 'cell', 'list', '--json')[0]!.name;
    ui = await launchUi(sb);
    // Root can't use Chromium's sandbox (Chromium refuses); an unprivileged user gets it through
    // a user namespace, as bwrap does. The browser only ever loads this loopback dashboard.
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', chromiumSandbox: process.getuid?.() !== 0 });
    page = await browser.newPage();
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
  });

  after(async () => {
    await browser?.close();
    ui?.child.kill('SIGTERM');
    sb?.cleanup();
  });

  it('listens on 127.0.0.1 only', async () => {
    assert.deepEqual(listeningAddresses(ui.port), ['127.0.0.1'], 'the kernel lists the socket on 127.0.0.1 alone');
    assert.equal(await accepts('127.0.0.1', ui.port), true, 'positive control: loopback connects');
    assert.equal(await accepts('127.0.0.2', ui.port), false, 'another loopback address does not');
    assert.equal(await accepts('::1', ui.port), false, 'nor does IPv6');
  });

  it('refuses a non-loopback bind and a bad port, starting nothing', () => {
    for (const bind of ['0.0.0.0', '::', '192.168.1.10', 'localhost']) {
      const r = ac(sb, 'ui', '--bind', bind, '--port', '0');
      assert.equal(r.status, 2, `--bind ${bind}: ${r.stderr}`);
      assert.match(r.stderr, /listens on 127\.0\.0\.1 only/);
      assert.equal(r.stdout, '', 'no URL printed');
    }
    const port = ac(sb, 'ui', '--port', '80; rm -rf /');
    assert.equal(port.status, 2);
    assert.match(port.stderr, /expected a port number/);
  });

  it('refuses requests without the token, from a foreign Origin or Host, and POSTs without the CSRF token', async () => {
    const host = `127.0.0.1:${ui.port}`;
    const withToken = { host, 'x-agentcell-token': ui.token };
    const ok = await raw(ui.port, '/', withToken);
    assert.equal(ok.status, 200, 'positive control: the token header gets in');
    assert.equal(ok.headers['content-security-policy']?.toString().startsWith("default-src 'self'"), true);
    assert.equal(ok.headers['access-control-allow-origin'], undefined, 'no CORS');

    assert.equal((await raw(ui.port, '/', { host })).status, 401, 'no token');
    assert.equal((await raw(ui.port, '/', { host, 'x-agentcell-token': `${ui.token}x` })).status, 401, 'wrong token');
    assert.equal((await raw(ui.port, '/?token=guess', { host })).status, 401, 'wrong token in the URL');
    assert.equal(
      (await raw(ui.port, '/', { host, cookie: `agentcell-ui-${ui.port}=${ui.token.slice(1)}` })).status,
      401,
      'wrong cookie',
    );
    const foreign = await raw(ui.port, '/', { ...withToken, origin: 'http://evil.example' });
    assert.equal(foreign.status, 403, 'foreign Origin');
    assert.equal((await raw(ui.port, '/', { ...withToken, origin: 'null' })).status, 403, 'opaque Origin');
    assert.equal((await raw(ui.port, '/', { ...withToken, 'sec-fetch-site': 'cross-site' })).status, 403);
    // DNS rebinding: evil.example resolves to 127.0.0.1, and the browser sends its own name as Host.
    const rebound = await raw(ui.port, '/', { ...withToken, host: `evil.example:${ui.port}` });
    assert.equal(rebound.status, 403, 'foreign Host');
    assert.equal((await raw(ui.port, '/', { ...withToken, host: `127.0.0.1:${ui.port + 1}` })).status, 403);
    assert.ok(!rebound.body.includes(cell), 'the refusal shows no cell');

    // A forged POST (token, right Origin, no CSRF field) changes nothing.
    const forged = await raw(
      ui.port,
      `/cell/${cell}/accept`,
      { ...withToken, origin: `http://${host}`, 'content-type': 'application/x-www-form-urlencoded' },
      {
        method: 'POST',
        body: 'scope=all&csrf=nope',
      },
    );
    assert.equal(forged.status, 403, forged.body);
    assert.equal(existsSync(join(sb.workspace, 'one.txt')), false, 'the forged accept applied nothing');
  });

  it('shows the run, its receipt and diff, and accepts one chosen file', async () => {
    const first = await page.goto(ui.url);
    assert.ok(first);
    assert.equal(new URL(page.url()).search, '', 'the token leaves the URL for a cookie');
    assert.match(first.headers()['content-security-policy'] ?? '', /^default-src 'self'/);
    await page.screenshot({ path: join(ARTIFACTS, 'cells.png'), fullPage: true });
    assert.match(await page.locator('#cells').innerText(), /6 pending/);

    await page.click(`#cells a[href="/cell/${cell}"]`);
    const timeline = await page.locator('#timeline').innerText();
    assert.match(timeline, /run exit 0 · pending/);
    assert.ok(timeline.includes(XSS_NAME), 'the command shows as text');
    await page.screenshot({ path: join(ARTIFACTS, 'cell.png'), fullPage: true });

    await page.click('#timeline a');
    assert.match(await page.locator('#verify').innerText(), /verified: all 1 receipt/);
    await page.screenshot({ path: join(ARTIFACTS, 'receipt.png'), fullPage: true });

    await page.click('header a[href$="/diff"]');
    const files = await page.locator('section.file').evaluateAll((s) => s.map((e) => e.getAttribute('data-path')));
    assert.deepEqual(files.sort(), [XSS_NAME, '.envrc', 'blob.bin', 'keep.txt', 'one.txt', 'two.txt'].sort());
    // The file named like markup is text: no element made from it, no script run.
    assert.equal(await page.locator('main img').count(), 0);
    assert.ok((await page.locator('main').innerText()).includes(XSS_NAME));
    // Side by side (the default): old | new, each row aligned, changed lines marked on their side.
    const rows = await page
      .locator('section[data-path="keep.txt"] table.sbs tbody tr')
      .evaluateAll((trs: HTMLTableRowElement[]) =>
        trs.map((tr): string[] => [
          tr.className,
          ...Array.from(tr.querySelectorAll('td'), (td) => `${td.className}:${td.textContent}`),
        ]),
      );
    assert.deepEqual(rows, [
      ['hunk', ':@@ -1,3 +1,4 @@'],
      ['ctx', 'no:1', 'ctx:first', 'no:1', 'ctx:first'],
      ['changed', 'no:2', 'del:old line', 'no:2', 'add:new line'],
      ['ctx', 'no:3', 'ctx:last', 'no:3', 'ctx:last'],
      ['changed', 'no:', 'empty:', 'no:4', 'add:added'],
    ]);
    const headings = await page.locator('section[data-path="keep.txt"] table.sbs thead th').allInnerTexts();
    assert.deepEqual(headings, ['a/keep.txt workspace', 'b/keep.txt cell']);
    const columns = await page
      .locator('section[data-path="keep.txt"] tr.changed td')
      .evaluateAll((tds) => tds.slice(0, 4).map((td) => Math.round(td.getBoundingClientRect().left)));
    assert.ok(
      columns[0]! < columns[1]! && columns[1]! < columns[2]! && columns[2]! < columns[3]!,
      `columns side by side: ${columns.join(',')}`,
    );
    assert.match(
      await page.locator('section[data-path="blob.bin"] tr.binary').innerText(),
      /binary file: \/dev\/null and b\/blob\.bin differ/,
    );
    const envrc = page.locator('section[data-path=".envrc"]');
    assert.match((await envrc.getAttribute('class')) ?? '', /flag-refused/, 'the control-plane file is marked');
    assert.match(await envrc.locator('.flag').innerText(), /refused: .*direnv/);
    assert.equal(await envrc.locator('td.add').innerText(), 'echo hi');
    await page.screenshot({ path: join(ARTIFACTS, 'diff.png'), fullPage: true });
    await page.click('#diff-view a');
    assert.equal(await page.locator('section[data-path="one.txt"] .patch .add').innerText(), '+one');
    assert.equal(await page.locator('table.sbs').count(), 0, 'unified: no columns');
    await page.screenshot({ path: join(ARTIFACTS, 'diff-unified.png'), fullPage: true });

    await page.check('input[name=path][value="one.txt"]');
    await page.click('button[value=selected]');
    assert.match(await page.locator('main').innerText(), /would apply 1 change\(s\), 5 left pending/);
    assert.equal(existsSync(join(sb.workspace, 'one.txt')), false, 'the confirmation page changed nothing');
    await page.screenshot({ path: join(ARTIFACTS, 'confirm-accept.png'), fullPage: true });
    await page.click('#confirm button');
    assert.match(await page.locator('#done').innerText(), /applied 1 change\(s\), 5 left pending/);

    assert.equal(readFileSync(join(sb.workspace, 'one.txt'), 'utf8'), 'one\n', 'accepted: on the host');
    assert.equal(existsSync(join(sb.workspace, 'two.txt')), false, 'not chosen: not on the host');
    const pending = acJson<{ path: string }[]>(sb, 'diff', '--json').map((c) => c.path);
    assert.deepEqual(
      pending.sort(),
      [XSS_NAME, '.envrc', 'blob.bin', 'keep.txt', 'two.txt'].sort(),
      'the rest stays pending',
    );
    const receipts = acJson<{ kind: string; command: string[]; scope?: { paths: string[] } }[]>(
      sb,
      'receipt',
      'list',
      '--json',
    );
    const decision = receipts.at(-1)!;
    assert.equal(decision.kind, 'decision');
    assert.deepEqual(decision.command, ['agentcell', 'ui', 'accept', 'one.txt'], 'the receipt says the ui did it');
    assert.deepEqual(decision.scope, { paths: ['one.txt'] });
    const verify = ac(sb, 'receipt', 'verify');
    assert.equal(verify.status, 0, verify.stderr);
  });

  it('forks and restores through confirmation pages, each with its receipt', async () => {
    await page.goto(`http://127.0.0.1:${ui.port}/cell/${cell}`);
    await page.fill('input[name=name]', 'ui-fork');
    await page.click('form.inline button');
    await page.click('#confirm button');
    assert.match(await page.locator('#done').innerText(), /forked into ui-fork/);
    const cells = acJson<{ name: string }[]>(sb, 'cell', 'list', '--json').map((c) => c.name);
    assert.ok(cells.includes('ui-fork'));

    await page.goto(`http://127.0.0.1:${ui.port}/cell/${cell}`);
    await page.click('a[href$="/restore"]');
    await page.screenshot({ path: join(ARTIFACTS, 'confirm-restore.png'), fullPage: true });
    await page.click('#confirm button');
    assert.match(await page.locator('#done').innerText(), /dropped 5 change\(s\)/);
    assert.deepEqual(acJson<unknown[]>(sb, 'diff', '--json'), []);
    const last = acJson<{ command: string[]; decision: string }[]>(sb, 'receipt', 'list', '--json').at(-1)!;
    assert.deepEqual(last.command, ['agentcell', 'ui', 'restore']);
    assert.equal(existsSync(join(sb.workspace, 'two.txt')), false);
  });

  it('streams a live run’s egress decisions, filtered by allowed/denied', async () => {
    await page.goto(`http://127.0.0.1:${ui.port}/cell/${cell}/egress`);
    await page.locator('#live-state', { hasText: /^live$/ }).waitFor({ timeout: 10_000 });
    writeAllowlistPolicy(sb, ['a.test']);
    const run = startCli(
      ['run', ...backendArgs('bwrap'), '--', 'sh', '-c', 'curl -s -m 5 http://denied.test/; echo ready; sleep 30'],
      { cwd: sb.workspace, env: sb.env },
    );
    const exited = new Promise((resolve) => run.on('exit', resolve));
    let output = '';
    run.stdout.on('data', (d: Buffer) => (output += d.toString()));
    run.stderr.on('data', (d: Buffer) => (output += d.toString()));
    try {
      const denied = page.locator('#egress tr.deny', { hasText: 'denied.test' });
      await denied.waitFor({ timeout: 30_000 }).catch((error: Error) => {
        throw new Error(`${error.message}\nthe run printed: ${output}\nthe page shows: ${page.url()}`);
      });
      await page.screenshot({ path: join(ARTIFACTS, 'egress.png'), fullPage: true });
      await page.uncheck('#show-deny');
      assert.equal(await denied.isVisible(), false, 'the denied filter hides it');
      await page.check('#show-deny');
      assert.equal(await denied.isVisible(), true);
    } finally {
      run.kill('SIGTERM');
      await exited;
    }
    assert.deepEqual(dialogs, [], 'no page ever ran a dialog');
  });

  it('renders a run’s LLM calls as spy does, a transcript’s markup as text', async () => {
    const run = acJson<{ id: string; kind: string }[]>(sb, 'receipt', 'list', '--json').find((r) => r.kind === 'run')!;
    const record = {
      time: '2026-11-23T12:00:00.000Z',
      cell,
      run: run.id,
      host: 'api.anthropic.com',
      method: 'POST',
      path: '/v1/messages',
      status: 200,
      provider: 'anthropic',
      durationMs: 12,
      request: {
        contentType: 'application/json',
        body: JSON.stringify({
          model: 'claude-test',
          messages: [{ role: 'user', content: '<script>alert(2)</script>' }],
        }),
        truncated: false,
      },
      response: {
        contentType: 'application/json',
        body: JSON.stringify({
          content: [{ type: 'text', text: 'done' }],
          usage: { input_tokens: 3, output_tokens: 1 },
        }),
        truncated: false,
      },
    };
    // The egress dir is the gateway's (the live run above made it), as a run with spy's would be.
    writeFileSync(join(cellDirOf(sb, cell), 'egress', `${run.id}.spy.jsonl`), `${JSON.stringify(record)}\n`);
    await page.goto(`http://127.0.0.1:${ui.port}/cell/${cell}/egress`);
    const spy = await page.locator('pre.spy').innerText();
    assert.match(spy, /claude-test/);
    assert.ok(spy.includes('<script>alert(2)</script>'), 'the message shows as text');
    assert.equal(await page.locator('main script').count(), 0);
  });

  it('shows a session live, stops it through a confirmation, and downloads a run’s evidence that verifies', async () => {
    const started = acJson<{ id: string }>(
      sb,
      ...['session', 'start', ...backendArgs('bwrap'), '--json', '--', 'sh', '-c'],
      'echo session-says-hi; sleep 60',
    );
    await page.goto(`http://127.0.0.1:${ui.port}/cell/${cell}`);
    const row = page.locator('#sessions tr', { hasText: started.id });
    assert.match(await row.innerText(), /running/);
    await row.locator(`a[href$="/session/${started.id}"]`).click();
    await page.locator('#transcript', { hasText: 'session-says-hi' }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('#live-state').innerText(), 'live');
    await page.click('a[href*="/stop-session?id="]');
    assert.match(await page.locator('main, body').first().innerText(), /would stop session/);
    await page.click('#confirm button');
    assert.match(await page.locator('#done').innerText(), /stopped session s-[0-9a-z]+: (exited|failed)/);
    const shown = acJson<{ state: string; receipt: string | null }>(sb, 'session', 'show', started.id, '--json');
    assert.notEqual(shown.state, 'running');
    assert.ok(shown.receipt, 'the stop left the run’s receipt');

    await page.goto(`http://127.0.0.1:${ui.port}/cell/${cell}`);
    await page.click(`a[href$="/evidence?run=${shown.receipt}"]`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#confirm button')]);
    const file = join(ARTIFACTS, 'ui-evidence.tar');
    await download.saveAs(file);
    assert.match(download.suggestedFilename(), /^evidence-r-[0-9a-z]+\.tar$/);
    const verified = agentcell(['evidence', 'verify', file, '--json'], { cwd: sb.workspace, env: sb.env });
    assert.equal(verified.status, 0, verified.stdout + verified.stderr);
    assert.equal((JSON.parse(verified.stdout) as { ok: boolean }).ok, true);
  });

  it('shows a tampered receipt as failing verification', async () => {
    const dir = join(cellDirOf(sb, cell), 'receipts');
    const file = readdirSync(dir).find((f) => f.startsWith('000001-'))!;
    const receipt = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { id: string; exitCode: number };
    writeFileSync(join(dir, file), JSON.stringify({ ...receipt, exitCode: 7 }));
    await page.goto(`http://127.0.0.1:${ui.port}/cell/${cell}/receipt/${receipt.id}`);
    const verdict = page.locator('#verify');
    assert.equal(await verdict.getAttribute('class'), 'bad');
    assert.match(await verdict.innerText(), new RegExp(`failed for this receipt[\\s\\S]*#1 ${receipt.id}`));
  });
});
