import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CLI,
  cellDirOf,
  makeSandbox,
  type CliResult,
  type Sandbox,
  waitFor,
  writeAllowlistPolicy,
  listen,
} from './helpers.js';

/**
 * `agentcell allow` (reload a running cell's allowlists from the host-side policy) and
 * `agentcell egress log`, end to end on bwrap against two loopback test servers named
 * a.test and b.test through `[network] resolve`. Nothing here contacts a non-loopback address.
 */

interface Running {
  child: ChildProcess;
  stdout: () => string;
  done: Promise<CliResult>;
}

function startCli(sb: Sandbox, args: string[]): Running {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: sb.workspace,
    env: sb.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
  return { child, stdout: () => stdout, done };
}

function runCli(sb: Sandbox, ...args: string[]): Promise<CliResult> {
  return startCli(sb, args).done;
}

/** The `tick a=… b=…` lines the cell's loop printed so far. */
function ticks(out: string): string[] {
  return out.split('\n').filter((l) => l.startsWith('tick '));
}

interface Report {
  run: string;
  dryRun: boolean;
  files: string[];
  added: { allow: string[]; deny: string[]; resolve: string[] };
  removed: { allow: string[]; deny: string[]; resolve: string[] };
  revoked: number;
}

describe('agentcell allow and egress log (bwrap, a running cell)', () => {
  let sb: Sandbox;
  let a: Server;
  let b: Server;
  let pa: number;
  let pb: number;

  const policy = (allow: string[]): void => writeAllowlistPolicy(sb, allow);

  before(async () => {
    a = createServer((req, res) => {
      if (req.url !== '/slow') return res.end('A\n');
      // A long download through a CONNECT tunnel: a reload that drops a.test must cut it.
      res.writeHead(200, { 'content-type': 'text/plain' });
      const timer = setInterval(() => res.write('.'), 100);
      const stop = setTimeout(() => res.end('\n'), 30_000);
      res.on('close', () => {
        clearInterval(timer);
        clearTimeout(stop);
      });
    });
    b = createServer((_req, res) => res.end('B\n'));
    pa = await listen(a);
    pb = await listen(b);
    sb = makeSandbox();
  });
  after(() => {
    for (const s of [a, b]) {
      s.close();
      s.closeAllConnections();
    }
    sb.cleanup();
  });

  it('widens and narrows a running cell from the host-side policy, revokes an open tunnel, and logs it all', async () => {
    policy([`a.test:${pa}`]);
    const follow = startCli(sb, ['egress', 'log', '--follow', '--json']);
    const loop = [
      // A tunnel (curl -p: CONNECT, then cleartext HTTP inside) that stays open until revoked.
      `(curl -sS -p -N -o /dev/null http://a.test:${pa}/slow 2>/dev/null; echo "slow-exit=$?") &`,
      'n=0; i=0',
      'while [ $i -lt 900 ]; do',
      `  a=$(curl -s -o /dev/null -w '%{http_code}' http://a.test:${pa}/)`,
      `  b=$(curl -s -o /dev/null -w '%{http_code}' http://b.test:${pb}/)`,
      '  echo "tick a=$a b=$b"',
      '  if [ "$a" = 403 ] && [ "$b" = 200 ]; then n=$((n+1)); [ $n -ge 3 ] && break; fi',
      '  i=$((i+1)); sleep 0.05',
      'done',
      'wait',
    ].join('\n');
    const run = startCli(sb, ['run', '--', 'sh', '-c', loop]);
    await waitFor('the first ticks', () => ticks(run.stdout()).length >= 2);
    assert.ok(
      ticks(run.stdout()).every((t) => t === 'tick a=200 b=403'),
      run.stdout(),
    );

    // A dry run reports the widening and changes nothing.
    policy([`a.test:${pa}`, `b.test:${pb}`]);
    const dry = await runCli(sb, 'allow', '--dry-run', '--json');
    assert.equal(dry.status, 0, dry.stderr);
    const dryReport = JSON.parse(dry.stdout) as Report;
    assert.deepEqual(dryReport.added.allow, [`b.test:${pb}`]);
    assert.equal(dryReport.dryRun, true);
    const seen = ticks(run.stdout()).length;
    await waitFor('ticks after the dry run', () => ticks(run.stdout()).length >= seen + 3);
    assert.ok(
      ticks(run.stdout()).every((t) => t === 'tick a=200 b=403'),
      'a dry run widened the cell',
    );

    // Widen: b.test becomes reachable, nothing is revoked.
    const widen = await runCli(sb, 'allow', '--json');
    assert.equal(widen.status, 0, widen.stderr);
    const wide = JSON.parse(widen.stdout) as Report;
    assert.deepEqual(wide.added, { allow: [`b.test:${pb}`], deny: [], resolve: [] });
    assert.deepEqual(wide.removed, { allow: [], deny: [], resolve: [] });
    assert.equal(wide.revoked, 0);
    assert.deepEqual(wide.files, [join(sb.workspace, 'agentcell.toml')]);
    await waitFor('b.test reachable', () => run.stdout().includes('tick a=200 b=200'));

    // Narrow: a.test is refused and the open tunnel to it is cut.
    policy([`b.test:${pb}`]);
    const narrow = await runCli(sb, 'allow');
    assert.equal(narrow.status, 0, narrow.stderr);
    assert.match(narrow.stdout, new RegExp(`^  - allow a\\.test:${pa}$`, 'm'));
    // The long tunnel, and maybe one of the loop's requests to a.test caught in flight.
    assert.match(narrow.stdout, /^ {2}[12] open connection\(s\) revoked$/m);

    const result = await run.done;
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^tick a=403 b=200$/m);
    const slow = /^slow-exit=(\d+)$/m.exec(result.stdout)?.[1];
    assert.ok(slow !== undefined && slow !== '0', `the revoked tunnel's curl should fail: ${result.stdout}`);

    // The log: one JSONL line per decision, the revoked tunnel marked.
    const followed = await follow.done;
    assert.equal(followed.status, 0, followed.stderr);
    const log = await runCli(sb, 'egress', 'log', '--json');
    assert.equal(log.status, 0, log.stderr);
    assert.equal(followed.stdout, log.stdout, '--follow saw exactly what the log holds');
    const events = log.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { host: string; kind: string; decision: string; reason: string; revoked?: true });
    const revoked = events.filter((e) => e.revoked);
    assert.equal(revoked.filter((e) => e.kind === 'connect').length, 1, 'the tunnel is logged as revoked');
    assert.ok(revoked.every((e) => e.host === 'a.test'));
    assert.ok(events.some((e) => e.host === 'b.test' && e.decision === 'deny' && e.reason === 'not-allowed'));
    assert.ok(events.some((e) => e.host === 'b.test' && e.decision === 'allow'));
    assert.ok(events.some((e) => e.host === 'a.test' && e.decision === 'deny' && e.reason === 'not-allowed'));

    const text = await runCli(sb, 'egress', 'log');
    assert.equal(text.status, 0, text.stderr);
    assert.equal(text.stdout.trim().split('\n').length, events.length);
    assert.match(text.stdout, new RegExp(`deny +http +b\\.test:${pb} +- +not-allowed +up 0 B down 0 B$`, 'm'));
    assert.match(
      text.stdout,
      new RegExp(`allow +connect +a\\.test:${pa} +127\\.0\\.0\\.1 +allow-rule a\\.test:${pa} .* revoked$`, 'm'),
    );

    // No run is going now: allow says so, and the control socket is gone.
    const idle = await runCli(sb, 'allow', '--json');
    assert.equal(idle.status, 2);
    assert.equal((JSON.parse(idle.stdout) as { error: { code: string } }).error.code, 'CELL_NOT_RUNNING');
    assert.deepEqual(
      readdirSync(join(cellDirOf(sb), 'egress')).filter((n) => !n.endsWith('.jsonl')),
      [],
    );
  });

  it('cannot be driven from inside the cell: the control socket is out of reach and the policy read-only', async () => {
    policy([`a.test:${pa}`]);
    const hostPolicy = readFileSync(join(sb.workspace, 'agentcell.toml'), 'utf8');
    // lstat, not find -type s: a socket bound onto a file shows as a regular file in readdir.
    writeFileSync(
      join(sb.workspace, 'find-sockets.pl'),
      [
        'use File::Find;',
        'find({ no_chdir => 1, wanted => sub {',
        '  my $f = $File::Find::name;',
        '  if ($f =~ m{^/(proc|sys)$}) { $File::Find::prune = 1; return }',
        '  print "$f\\n" if lstat($f) && -S _;',
        '} }, "/");',
        '',
      ].join('\n'),
    );
    const control = join(cellDirOf(sb), 'egress', 'control', 'control.sock');
    const nodeConnect = (path: string, payload: string): string =>
      `/run/agentcell/node -e 'const s = require("net").connect(process.argv[1]); s.on("connect", () => s.write(process.argv[2])); s.on("data", (d) => console.log("reply=" + String(d).split("\\r\\n")[0])); s.on("error", (e) => console.log("error=" + e.code)); s.on("close", () => console.log("closed"))' ${path} '${payload}'`;
    const attack = [
      `echo 'allow = ["b.test:${pb}"]' >> agentcell.toml 2>/dev/null && echo toml=written || echo toml=refused`,
      `ls ${join(cellDirOf(sb), 'egress')} >/dev/null 2>&1 && echo statedir=visible || echo statedir=absent`,
      `echo "control-$(${nodeConnect(control, '{"op":"reload","dryRun":false}\\n')} | head -1)"`,
      // Every unix socket the cell can see, on every mount but /proc and /sys: only the gateway's.
      'echo "sockets=$(perl find-sockets.pl | tr "\\n" " ")"',
      // The only host socket in reach is the gateway's: a control request there is just junk HTTP.
      `echo "gateway-$(${nodeConnect('/run/agentcell/egress.sock', '{"op":"reload","dryRun":false}\\n\\r\\n\\r\\n')} | head -1)"`,
      'echo attacked',
      'i=0; while [ $i -lt 60 ]; do',
      `  echo "tick b=$(curl -s -o /dev/null -w '%{http_code}' http://b.test:${pb}/)"`,
      '  i=$((i+1)); sleep 0.05',
      'done',
    ].join('\n');
    const run = startCli(sb, ['run', '--', 'sh', '-c', attack]);
    await waitFor('the attack', () => run.stdout().includes('attacked'), 90_000);
    const reload = await runCli(sb, 'allow', '--json');
    assert.equal(reload.status, 0, reload.stderr);
    const report = JSON.parse(reload.stdout) as Report;
    assert.deepEqual(report.added, { allow: [], deny: [], resolve: [] }, 'the cell changed the policy');
    assert.deepEqual(report.removed, { allow: [], deny: [], resolve: [] });
    const result = await run.done;
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^toml=refused$/m);
    assert.match(result.stdout, /^statedir=absent$/m);
    assert.match(result.stdout, /^control-error=ENOENT$/m);
    assert.match(result.stdout, /^sockets=\/run\/agentcell\/egress\.sock $/m);
    assert.match(result.stdout, /^gateway-reply=HTTP\/1\.1 400 /m);
    const all = ticks(result.stdout);
    assert.ok(all.length >= 10, result.stdout);
    assert.deepEqual(new Set(all), new Set(['tick b=403']));
    assert.equal(readFileSync(join(sb.workspace, 'agentcell.toml'), 'utf8'), hostPolicy);
    // Positive control: the same reload from the host, after the host's policy changes, does widen.
    policy([`a.test:${pa}`, `b.test:${pb}`]);
    const positive = startCli(sb, [
      'run',
      '--',
      'sh',
      '-c',
      `echo ready; i=0; while [ $i -lt 200 ]; do c=$(curl -s -o /dev/null -w '%{http_code}' http://b.test:${pb}/); [ "$c" = 200 ] && echo widened && break; i=$((i+1)); sleep 0.05; done`,
    ]);
    await waitFor('the second run', () => positive.stdout().includes('ready'));
    const positiveResult = await positive.done;
    assert.match(positiveResult.stdout, /^widened$/m, 'a new run reads the host policy');
  });

  it('refuses a policy file the cell could write (direct workspace) and a switch to an open network', async () => {
    const errorCode = (r: CliResult): string => (JSON.parse(r.stdout) as { error: { code: string } }).error.code;
    writeFileSync(join(sb.workspace, 'custom.toml'), `[network]\nmode = "allowlist"\nallow = ["a.test:${pa}"]\n`);
    const direct = startCli(sb, [
      'run',
      '--mode',
      'development',
      '--workspace-mode',
      'direct',
      '--policy',
      'custom.toml',
      '--',
      'sh',
      '-c',
      'echo ready; sleep 2',
    ]);
    await waitFor('the direct run', () => direct.stdout().includes('ready'));
    const writable = await runCli(sb, 'allow', '--json');
    assert.equal(writable.status, 2, writable.stdout);
    assert.equal(errorCode(writable), 'RELOAD_REFUSED');
    assert.match(writable.stdout, /custom\.toml lies in a direct-mode workspace/);
    assert.equal((await direct.done).status, 0);

    policy([`a.test:${pa}`]);
    const run = startCli(sb, ['run', '--', 'sh', '-c', 'echo ready; sleep 2']);
    await waitFor('the run', () => run.stdout().includes('ready'));
    writeFileSync(join(sb.workspace, 'agentcell.toml'), '[network]\nmode = "open"\n');
    const open = await runCli(sb, 'allow', '--json');
    assert.equal(open.status, 2, open.stdout);
    assert.equal(errorCode(open), 'RELOAD_REFUSED');
    assert.equal((await run.done).status, 0);
  });
});
