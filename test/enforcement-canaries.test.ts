import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as agentcell from '../src/index.js';
import {
  CELL_CANARY_DIR,
  PLAN_RUN_ON,
  planLine,
  withCanaryPrelude,
  type PreludeShell,
} from '../src/evidence/canary-script.js';
import { CANARY_PROBES, withCanaries } from '../src/evidence/canaries.js';
import { acJson, listen, makeSandbox, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS, TEST_IMAGE } from './backends-under-test.js';

/**
 * Enforcement canaries (src/evidence/canaries.ts): every run probes its own boundary from
 * inside the cell before the command, the receipt records it, and a probe that gets
 * through stops the run (exit 3) naming it. The failure is forced the way a broken host
 * would: the test weakens the prepared cell itself through the library (one mask dropped
 * after planning), with no hook in agentcell that could weaken a production run.
 */

type Probe = { probe: string; result: string; detail: string };
const SECRET = `canary-secret-${process.pid}`;

function latestReceipt(sb: Sandbox): agentcell.Receipt {
  return acJson<agentcell.Receipt>(sb, 'receipt', 'show', '--latest', '--format', 'json');
}

function resultOf(probes: readonly Probe[] | undefined, probe: string): string[] {
  return (probes ?? []).filter((p) => p.probe === probe).map((p) => p.result);
}

for (const backend of TEST_BACKENDS) {
  describe(`enforcement canaries on ${backend}`, () => {
    let sb: Sandbox;
    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({ 'README.md': 'hi\n', '.env': `TOKEN=${SECRET}\n`, '.ssh/id_rsa': SECRET });
      writeFileSync(join(sb.home, '.bashrc'), `# ${SECRET}\n`);
    });
    after(() => sb.cleanup());

    const request = (argv: string[], extra: Partial<agentcell.RunRequest> = {}): agentcell.RunRequest => ({
      argv,
      tty: false,
      paths: agentcell.agentcellPaths(sb.env),
      hostEnv: sb.env,
      cwd: sb.workspace,
      backend,
      ...(backend === 'bwrap' ? {} : { image: TEST_IMAGE }),
      ...extra,
    });

    it('every probe holds, the receipt records each, and the command runs', () => {
      for (const network of [[], ['--allow', 'example.org']]) {
        const r = spawnSync(
          process.execPath,
          [join(import.meta.dirname, '..', 'agentcell.cjs'), 'run', ...backendArgs(backend), ...network, '--', 'true'],
          { cwd: sb.workspace, env: sb.env, encoding: 'utf8' },
        );
        assert.equal(r.status, 0, r.stderr);
        const probes = latestReceipt(sb).enforcement ?? [];
        assert.deepEqual(
          probes.filter((p) => p.result === 'through' || p.result === 'inconclusive'),
          [],
          'nothing got through',
        );
        for (const probe of CANARY_PROBES.filter((p) => p !== 'gateway-deny'))
          assert.ok(resultOf(probes, probe).includes('blocked'), `${probe} ran and held: ${JSON.stringify(probes)}`);
        assert.deepEqual(resultOf(probes, 'gateway-deny'), [network.length > 0 ? 'blocked' : 'skipped']);
        assert.ok(
          probes.some((p) => p.probe === 'host-path' && p.detail.includes(join(sb.home, '.bashrc'))),
          'the host home was probed',
        );
      }
    });

    it('a canary that gets through stops the run before the command: exit 3, the receipt names it', async () => {
      const paths = agentcell.agentcellPaths(sb.env);
      const planned = await agentcell.prepareRun(request(['sh', '-c', 'echo ran > ran.txt']));
      // The weakened cell: the .env mask is gone, as on a host where the mask silently failed.
      const prepared = agentcell.replan(planned, {
        ...planned.spec,
        masks: planned.spec.masks.filter((m) => !m.target.endsWith('/.env')),
      });
      await assert.rejects(agentcell.runPrepared(prepared, paths), (error: unknown) => {
        assert.ok(error instanceof agentcell.AgentcellError);
        assert.equal(error.code, 'ENFORCEMENT_FAILED');
        assert.equal(error.exitCode, 3);
        assert.match(error.message, /masked-file got through/);
        return true;
      });
      const receipt = latestReceipt(sb);
      assert.deepEqual(resultOf(receipt.enforcement, 'masked-file'), ['through']);
      assert.equal(receipt.exitCode, 3);
      assert.deepEqual(receipt.changes, { added: 0, modified: 0, deleted: 0 }, 'the command did not run');
      assert.ok(receipt.assurance.reasons.some((r) => r.includes('masked-file got through')));
      assert.equal(JSON.stringify(receipt).includes(SECRET), false, 'the canary reports the leak, not the secret');
    });

    it('breakglass runs on past a canary that got through, labeled in assurance', async () => {
      const paths = agentcell.agentcellPaths(sb.env);
      const today = new Date().toLocaleDateString('sv');
      const planned = await agentcell.prepareRun(
        request(['sh', '-c', 'echo ran > ran.txt'], { mode: 'breakglass', ackBreakglass: today, network: 'none' }),
      );
      const prepared = agentcell.replan(planned, {
        ...planned.spec,
        masks: planned.spec.masks.filter((m) => !m.target.endsWith('/.env')),
      });
      const { outcome, receipt } = await agentcell.runPrepared(prepared, paths);
      assert.equal(outcome.exitCode, 0);
      assert.equal(receipt.changes.added, 1, 'the command ran');
      assert.deepEqual(resultOf(receipt.enforcement, 'masked-file'), ['through']);
      assert.equal(receipt.assurance.level, 'breakglass');
      assert.ok(receipt.assurance.reasons.some((r) => r.includes('masked-file got through')));
    });

    it('doctor --probe runs the same canaries on demand', () => {
      const image = backend === 'bwrap' ? '' : `image = "${TEST_IMAGE}"\n`;
      writeFileSync(join(sb.workspace, 'agentcell.toml'), `[cell]\nbackend = "${backend}"\n${image}`);
      const r = spawnSync(
        process.execPath,
        [join(import.meta.dirname, '..', 'agentcell.cjs'), 'doctor', '--probe', '--json'],
        {
          cwd: sb.workspace,
          env: sb.env,
          encoding: 'utf8',
        },
      );
      const report = JSON.parse(r.stdout) as { enforcement: { held: boolean; backend: string; probes: Probe[] } };
      assert.equal(report.enforcement.backend, backend);
      assert.equal(report.enforcement.held, true, JSON.stringify(report.enforcement.probes));
      assert.deepEqual(resultOf(report.enforcement.probes, 'masked-file'), ['blocked']);
    });
  });
}

describe('enforcement canaries: the plan', () => {
  it('names no path with a control character (a repo file could forge a result line)', () => {
    const ws = mkdtempSync(join(tmpdir(), 'agentcell-canary-plan-'));
    try {
      const forged = join(ws, 'x\nmasked-file\tthrough\tforged.env');
      writeFileSync(forged, 'TOKEN=1\n');
      writeFileSync(join(ws, 'z.env'), 'TOKEN=2\n');
      const spec = {
        cell: 'c',
        rootfs: { kind: 'host' as const },
        workspace: { path: ws, mode: 'overlay' as const },
        masks: [
          { target: forged, kind: 'file' as const },
          { target: join(ws, 'z.env'), kind: 'file' as const },
        ],
        readonlyPaths: [],
        mounts: [],
        home: join(ws, 'home'),
        cwd: ws,
        argv: ['true'],
        env: {},
        identity: { uid: 1000, gid: 1000 },
        network: 'none' as const,
        limits: {},
        seccomp: true,
        tty: false,
      };
      const { canaries } = withCanaries(spec, {
        cellDir: join(ws, 'cell'),
        mode: 'strict',
        hostPaths: [],
        hostHome: join(ws, 'home'),
        rootWritable: false,
        learn: false,
        image: false,
      });
      assert.ok(canaries.plan.includes(planLine('masked_file', join(ws, 'z.env'))), canaries.plan.join('\n'));
      assert.equal(canaries.plan.join('\n').includes('forged'), false);
    } finally {
      rmSync(ws, { recursive: true, force: true });
    }
  });
});

describe('enforcement canaries: positive control (the same probes where nothing stops them)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'agentcell-canary-control-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs the prelude with its canary dir at `canaryDir` (the plan already written); `wrap` puts it in a namespace. */
  function runPrelude(
    shell: PreludeShell,
    canaryDir: string,
    wrap: string[] = [],
    command = ['echo', 'command ran'],
    env: NodeJS.ProcessEnv = process.env,
  ): SpawnSyncReturns<string> {
    const prelude = withCanaryPrelude(command, shell).map((arg) => arg.replaceAll(CELL_CANARY_DIR, canaryDir));
    const [file, ...args] = [...wrap, ...prelude];
    return spawnSync(file!, args, { encoding: 'utf8', env });
  }

  const throughOf = (canaryDir: string): string[] =>
    readFileSync(join(canaryDir, 'results'), 'utf8')
      .trim()
      .split('\n')
      .filter((l) => l.split('\t')[1] === 'through')
      .map((l) => l.split('\t')[0] ?? '');

  for (const shell of ['/bin/sh', '/bin/bash'] as const) {
    it(`each probe reports through outside any cell (${shell})`, async () => {
      const secret = join(dir, 'secret.env');
      writeFileSync(secret, `TOKEN=${SECRET}\n`);
      const secretDir = join(dir, 'secret-dir');
      mkdirSync(secretDir, { recursive: true });
      writeFileSync(join(secretDir, 'key'), SECRET);
      const server = createServer((s) => s.end());
      const port = await listen(server);
      try {
        const canaryDir = join(dir, `canary-${shell.slice(5)}`);
        mkdirSync(canaryDir);
        const plan = [
          planLine('net', 'tcp', 'direct-tcp', '127.0.0.1', String(port), 'dns', 'localhost'),
          planLine('masked_file', secret),
          planLine('masked_dir', secretDir),
          planLine('host_path', secretDir),
          planLine('write_refused', dir),
          PLAN_RUN_ON,
        ];
        writeFileSync(join(canaryDir, 'plan'), `${plan.join('\n')}\n`);
        const r = runPrelude(shell, canaryDir);
        assert.equal(r.stdout, 'command ran\n', r.stderr);
        assert.deepEqual(throughOf(canaryDir), [
          'direct-tcp',
          'dns',
          'masked-file',
          'masked-dir',
          'host-path',
          'write-outside',
        ]);
        assert.match(readFileSync(join(canaryDir, 'results'), 'utf8'), /\nend\texec\t\n$/);
        assert.equal(readFileSync(join(canaryDir, 'plan'), 'utf8'), '', 'the plan is emptied once read');

        // Without PLAN_RUN_ON the same plan stops before the command, exit 3.
        writeFileSync(join(canaryDir, 'plan'), `${plan.slice(1, 2).join('\n')}\n`);
        const stopped = runPrelude(shell, canaryDir);
        assert.equal(stopped.status, 3);
        assert.equal(stopped.stdout, '');
        assert.match(stopped.stderr, /canary masked-file .* got through; the command did not run/);
      } finally {
        server.close();
      }
    });
  }

  for (const shell of ['/bin/sh', '/bin/bash'] as const) {
    it(`the command gets its environment, umask and descriptors as they were (${shell})`, () => {
      const canaryDir = join(dir, `canary-env-${shell.slice(5)}`);
      mkdirSync(canaryDir);
      writeFileSync(join(canaryDir, 'plan'), `${planLine('skip', 'masked-file', 'nothing to probe here')}\n`);
      // Names the prelude once used for itself, a locale, and a HOME with an rc file bash must not read.
      const home = join(dir, `home-${shell.slice(5)}`);
      mkdirSync(home);
      writeFileSync(join(home, '.bashrc'), 'export FROM_BASHRC=1\n');
      const env = { PATH: process.env['PATH'], HOME: home, R: 'r', D: 'd', STOP: 's', first: 'f', LC_ALL: 'C' };
      // SHLVL aside: bash exports it (its exec puts the level back; an unset one becomes 0).
      const command = ['sh', '-c', 'umask; env | grep -v "^SHLVL=" | sort; ls /proc/self/fd', 'probe-env'];
      const wrapped = spawnSync('sh', ['-c', 'umask 027; exec "$@"', 'umask', ...command], { encoding: 'utf8', env });
      const direct = spawnSync('sh', ['-c', 'umask 027; exec "$@"', 'umask', 'true'], { encoding: 'utf8', env });
      assert.equal(direct.status, 0);
      const through = runPrelude(shell, canaryDir, ['sh', '-c', 'umask 027; exec "$@"', 'umask'], command, env);
      assert.equal(through.status, 0, through.stderr);
      assert.equal(through.stdout, wrapped.stdout);
      assert.match(through.stdout, /^0027\n/);
    });
  }

  it('/bin/sh without bash runs the file probes and labels the network ones skipped', () => {
    const canaryDir = join(dir, 'canary-nobash');
    mkdirSync(canaryDir);
    const secret = join(dir, 'nobash.env');
    writeFileSync(secret, `TOKEN=${SECRET}\n`);
    const plan = [
      planLine('net', 'tcp', 'direct-tcp', '127.0.0.1', '9', 'dns', 'localhost'),
      planLine('masked_file', secret),
    ];
    writeFileSync(join(canaryDir, 'plan'), `${[...plan, PLAN_RUN_ON].join('\n')}\n`);
    const r = runPrelude('/bin/sh', canaryDir, [], ['/bin/echo', 'command ran'], { PATH: join(dir, 'no-bash-here') });
    assert.equal(r.stdout, 'command ran\n', r.stderr);
    assert.deepEqual(readFileSync(join(canaryDir, 'results'), 'utf8').split('\n').slice(0, -1), [
      'direct-tcp\tskipped\tno bash in the cell',
      'dns\tskipped\tno bash in the cell',
      `masked-file\tthrough\tread ${secret}`,
      'end\texec\t',
    ]);
  });

  it('in a network namespace with only loopback (the in-process path), a connect, a name and a gateway that let through report through', () => {
    // A listener on 127.0.0.1:8080 and a "gateway" on 3128 that opens any tunnel, inside the namespace.
    const canaryDir = join(dir, 'canary-netns');
    mkdirSync(canaryDir);
    const auth = Buffer.from('agentcell:canary-token').toString('base64');
    writeFileSync(
      join(canaryDir, 'plan'),
      [
        `_ac_auth=${auth}`,
        planLine('net', 'gateway', 'denied.invalid', 'tcp', 'direct-tcp', '127.0.0.1', '8080', 'dns', 'localhost'),
        PLAN_RUN_ON,
        '',
      ].join('\n'),
    );
    const server = String.raw`const net = require('node:net'), fs = require('node:fs');
net.createServer((s) => s.on('error', () => undefined).once('data', (d) => { fs.writeFileSync(process.argv[1] + '/request', d); s.end('HTTP/1.1 200 Connection established\r\n\r\n'); })).listen(3128, '127.0.0.1', () =>
  net.createServer((s) => s.end()).listen(8080, '127.0.0.1', () => fs.writeFileSync(process.argv[1] + '/listening', '')));`;
    const wrap = [
      'bwrap',
      '--unshare-all',
      '--die-with-parent',
      '--ro-bind',
      '/',
      '/',
      '--dev',
      '/dev',
      '--proc',
      '/proc',
      '--bind',
      canaryDir,
      canaryDir,
      '--',
      'sh',
      '-c',
      // The server is ended once the prelude is: it holds spawnSync's output pipes, and bwrap's
      // init outlives its command while a process is left (it once ran on here, CI waiting forever).
      `cat /proc/net/dev >"$1/interfaces"; "$2" -e "$3" "$1" & server=$!; until [ -e "$1/listening" ]; do sleep 0.01; done; shift 3; "$@"; status=$?; kill "$server"; wait "$server"; exit "$status"`,
      'netns',
      canaryDir,
      process.execPath,
      server,
    ];
    const r = runPrelude('/bin/bash', canaryDir, wrap);
    assert.equal(r.stdout, 'command ran\n', r.stderr);
    const interfaces = readFileSync(join(canaryDir, 'interfaces'), 'utf8').trim().split('\n').slice(2);
    assert.deepEqual(
      interfaces.map((l) => l.trim().split(':')[0]),
      ['lo'],
      'only loopback: the prelude probed in its own process',
    );
    assert.deepEqual(throughOf(canaryDir), ['direct-tcp', 'dns', 'gateway-deny'], 'the gateway answer is read last');
    assert.match(
      readFileSync(join(canaryDir, 'request'), 'utf8'),
      new RegExp(`^CONNECT denied\\.invalid:443 HTTP/1\\.1\r\n[^]*Proxy-Authorization: Basic ${auth}\r\n`),
    );
  });
});
