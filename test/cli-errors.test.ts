import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { assuranceText } from '../src/cli/render.js';
import { CLI, ac, acJson, agentcell, makeSandbox, type Sandbox } from './helpers.js';

let sb: Sandbox | undefined;
afterEach(() => {
  sb?.cleanup();
  sb = undefined;
});

interface ErrorJson {
  error: { code: string; message: string };
}

/** Runs the CLI expecting agentcell's own failure: exit `status`, a JSON error object with `code`. */
function failsWith(s: Sandbox, status: number, code: string, ...args: string[]): string {
  const end = args.indexOf('--');
  const r = ac(s, ...(end === -1 ? [...args, '--json'] : [...args.slice(0, end), '--json', ...args.slice(end)]));
  assert.equal(r.status, status, `agentcell ${args.join(' ')}: exit ${String(r.status)}: ${r.stdout}${r.stderr}`);
  const body = JSON.parse(r.stdout) as ErrorJson;
  assert.equal(body.error.code, code, body.error.message);
  return body.error.message;
}

describe('a cell named with --cell must exist for commands that only read or decide', () => {
  // Every command that takes --cell and never creates a cell; run, shell and pubkey create theirs.
  const commands: string[][] = [
    ['diff'],
    ['accept'],
    ['accept', '--dry-run'],
    ['restore', '--dry-run'],
    ['checkpoint', '--dry-run'],
    ['fork', 'other', '--dry-run'],
    ['receipt', 'list'],
    ['receipt', 'show'],
    ['receipt', 'verify'],
    ['egress', 'log'],
    ['spy'],
    ['allow'],
    ['allow', 'example.com', '--dry-run'],
  ];
  for (const command of commands)
    it(`${command.join(' ')} --cell nosuch: CELL_NOT_FOUND, exit 2, and nothing made`, () => {
      sb = makeSandbox();
      const message = failsWith(sb, 2, 'CELL_NOT_FOUND', ...command, '--cell', 'nosuch');
      assert.match(message, /no cell nosuch/);
      assert.match(message, /agentcell run --cell NAME creates one/);
      assert.equal(existsSync(join(sb.agentcellHome, 'state', 'cells', 'nosuch')), false);
      assert.equal(existsSync(join(sb.workspace, 'agentcell.toml')), false);
    });

  it('cell show and cell rm of a missing cell: CELL_NOT_FOUND; a path is not a cell name', () => {
    sb = makeSandbox();
    failsWith(sb, 2, 'CELL_NOT_FOUND', 'cell', 'show', 'nosuch');
    failsWith(sb, 2, 'CELL_NOT_FOUND', 'cell', 'rm', 'nosuch', '--dry-run');
    failsWith(sb, 2, 'USAGE', 'cell', 'show', '../state');
  });

  it('the workspace’s own cell, before its first run, reads as empty (positive control: same commands)', () => {
    sb = makeSandbox();
    assert.deepEqual(acJson(sb, 'diff', '--json'), []);
    assert.deepEqual(acJson(sb, 'receipt', 'list', '--json'), []);
  });
});

describe('names and labels say what is allowed', () => {
  it('cell names are case-insensitive: MyCell is the cell mycell, and both spellings reach it', () => {
    sb = makeSandbox();
    const run = ac(sb, 'run', '--cell', 'MyCell', '--', 'true');
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(readdirSync(join(sb.agentcellHome, 'state', 'cells')), ['mycell']);
    const rows = acJson<{ seq: number }[]>(sb, 'receipt', 'list', '--cell', 'MYCELL', '--json');
    assert.equal(rows.length, 1);
    const again = ac(sb, 'run', '--cell', 'mycell', '--', 'true');
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(readdirSync(join(sb.agentcellHome, 'state', 'cells')), ['mycell']);
    // What stays refused, with the rule in the message.
    for (const bad of ['', '-x', 'a/b', 'a b', 'x'.repeat(64)]) {
      const message = failsWith(sb, 2, 'USAGE', 'run', '--cell', bad, '--', 'true');
      assert.match(message, /use 1-63 letters, digits/);
    }
  });

  it('checkpoint --name: empty, numeric and id-shaped labels are refused, also on a dry run', () => {
    sb = makeSandbox();
    assert.equal(ac(sb, 'run', '--', 'sh', '-c', 'echo x > f').status, 0);
    for (const bad of ['', '12', 'deadbeef', '-x', 'a b'])
      for (const dry of [[], ['--dry-run']]) {
        const message = failsWith(sb, 2, 'USAGE', 'checkpoint', '--name', bad, ...dry);
        assert.match(message, /invalid checkpoint name/);
        assert.match(message, /starting with a letter/);
      }
    const ok = acJson<{ layer: { name: string } }>(sb, 'checkpoint', '--name', 'before-refactor', '--json');
    assert.equal(ok.layer.name, 'before-refactor');
  });

  it('--allow: empty, URLs and paths get a message saying what to give instead', () => {
    sb = makeSandbox();
    const cases: [string, RegExp][] = [
      ['', /empty host/],
      ['  ', /empty host/],
      ['http://x.com', /give a host name, not a URL: did you mean x\.com\?/],
      ['https://user@api.x.com:8443/v1?q', /not a URL: did you mean api\.x\.com:8443\?/],
      ['x.com/path', /not a path: did you mean x\.com\?/],
    ];
    for (const [value, expected] of cases) {
      const message = failsWith(sb, 2, 'POLICY_INVALID', 'run', '--allow', value, '--dry-run', '--', 'true');
      assert.match(message, expected, `--allow ${JSON.stringify(value)}: ${message}`);
    }
    // Positive control: a host name is accepted.
    assert.equal(ac(sb, 'run', '--network', 'allowlist', '--allow', 'x.com', '--dry-run', '--', 'true').status, 0);
  });
});

describe('options a backend cannot honour are refused', () => {
  it('--image on bwrap is a usage error naming [cell] rootfs and image build --rootfs', () => {
    sb = makeSandbox();
    const message = failsWith(
      sb,
      2,
      'USAGE',
      'run',
      '--backend',
      'bwrap',
      '--image',
      'x/y:1',
      '--dry-run',
      '--',
      'true',
    );
    assert.match(message, /bwrap cells .* run no OCI image/);
    assert.match(message, /\[cell\] rootfs/);
    assert.match(message, /image build --rootfs/);
  });
});

describe('an unusable state directory fails fast', () => {
  for (const home of ['/proc/nope', '/dev/null/x'])
    it(`AGENTCELL_HOME=${home}: exit 3 within seconds, naming the path`, () => {
      sb = makeSandbox();
      const started = Date.now();
      const r = spawnSync(process.execPath, [CLI, 'run', '--json', '--', 'true'], {
        cwd: sb.workspace,
        env: { ...sb.env, AGENTCELL_HOME: home },
        encoding: 'utf8',
        timeout: 20_000,
      });
      assert.equal(r.error, undefined, 'agentcell did not finish: it spins');
      assert.ok(Date.now() - started < 15_000);
      assert.equal(r.status, 3, r.stdout + r.stderr);
      const body = JSON.parse(r.stdout) as ErrorJson;
      assert.equal(body.error.code, 'PATH_UNUSABLE');
      assert.ok(body.error.message.includes(home), body.error.message);
      assert.match(body.error.message, /AGENTCELL_HOME/);
    });
});

describe('strict labels what the host imposes', () => {
  it('a strict run’s remaining reasons are called host limits, labeled not refused; development’s are not', () => {
    const reasons = ['workspace overlay by the copy driver: no overlay mount here, a copy per run'];
    assert.match(
      assuranceText({ mode: 'strict', level: 'reduced', reasons }),
      /^reduced \(host limits, labeled not refused: workspace overlay by the copy driver/,
    );
    assert.equal(assuranceText({ mode: 'development', level: 'reduced', reasons }), `reduced (${reasons[0]!})`);
    assert.equal(assuranceText({ mode: 'strict', level: 'high', reasons: [] }), 'high');
  });
});

describe('hitting a resource bound is said, not just exit 137', () => {
  it('bwrap: an OOM kill and a refused fork name the limit on stderr and in the --json exit event', () => {
    sb = makeSandbox({ 'agentcell.toml': '[resources]\nmemory = "64M"\npids = 64\n' });
    const memory = ac(
      sb,
      'run',
      '--backend',
      'bwrap',
      '--',
      'sh',
      '-c',
      'head -c 300000000 /dev/zero | tail > /dev/null',
    );
    // Where no writable cgroup exists the limit is not enforced, and the run must say that instead.
    if (/resources\.memory not enforced/.test(memory.stderr)) return;
    assert.notEqual(memory.status, 0);
    assert.match(memory.stderr, /agentcell: the run hit the memory limit \(64 MiB, \[resources\] memory\)/);
    const receipt = acJson<{ limit?: unknown }>(sb, 'receipt', 'show', '--json');
    assert.deepEqual(receipt.limit, {
      hit: 'memory',
      detail: 'the run hit the memory limit (64 MiB, [resources] memory)',
    });
    assert.equal(ac(sb, 'receipt', 'verify').status, 0, 'the signed receipt with its limit verifies');
    const pids = ac(
      sb,
      'run',
      '--backend',
      'bwrap',
      '--json',
      '--',
      'sh',
      '-c',
      'for i in $(seq 100); do sleep 2 & done; wait',
    );
    const exit = JSON.parse(pids.stderr.trim().split('\n').at(-1)!) as { limitHit?: unknown; message?: string };
    assert.equal(exit.limitHit, 'pids');
    assert.match(exit.message ?? '', /process limit \(64 processes, \[resources\] pids\)/);
    // Positive control: the same cell under its limits says nothing of the kind.
    const fine = ac(sb, 'run', '--backend', 'bwrap', '--', 'true');
    assert.equal(fine.status, 0);
    assert.doesNotMatch(fine.stderr, /hit the/);
  });
});

describe('an agent with nothing to log in with says how to fix it', () => {
  it('no key and no stored login: the hint names agentcell login and the key variable, before and after a failed run', () => {
    sb = makeSandbox({ 'agentcell.toml': '[agent]\nsource = "host"\n' });
    // A stand-in for the agent CLI on the host's PATH that fails the way an unauthenticated one does.
    const bin = join(sb.root, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'claude'), '#!/bin/sh\necho "Not logged in" >&2\nexit 1\n', { mode: 0o755 });
    const env = { ...sb.env, PATH: `${bin}:${sb.env['PATH'] ?? ''}` };
    const r = agentcell(['claude', '--backend', 'bwrap', '--', '-p', 'hi'], { cwd: sb.workspace, env });
    assert.equal(r.status, 1, r.stderr);
    const hint = /claude has no credentials in this cell: run agentcell login claude, or set [A-Z_ ]*ANTHROPIC_API_KEY/;
    assert.match(r.stderr, new RegExp(`agentcell: ${hint.source}`));
    assert.match(r.stderr, new RegExp(`agentcell: claude exited 1; ${hint.source}`));
    // Positive control: with a key on the host the same run gives no hint.
    const keyed = agentcell(['claude', '--backend', 'bwrap', '--', '-p', 'hi'], {
      cwd: sb.workspace,
      env: { ...env, ANTHROPIC_API_KEY: 'sk-ant-test' },
    });
    assert.equal(keyed.status, 1, keyed.stderr);
    assert.doesNotMatch(keyed.stderr, /no credentials/);
  });
});
