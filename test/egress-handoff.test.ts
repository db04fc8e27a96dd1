import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mutableCopy } from '../src/_internal/deep-readonly.js';
import type { CellEgress, CellSpec, RunControl } from '../src/backends/backend.js';
import { CELL_CANARY_DIR } from '../src/evidence/canary-script.js';
import { LISTENER_ADOPTED, LISTENER_REFUSED } from '../src/backends/receive-cell-listener.js';
import { CELL_BRIDGE_NODE, CELL_PROXY_PORT, withHandoff } from '../src/egress/cell/proxy-environment.js';
import { createEgressGateway } from '../src/egress/gateway/egress-gateway.js';
import { startRunGateway, type RunEgress } from '../src/egress/gateway/run-gateway.js';
import { agentcellPaths, prepareRun, type PreparedRun } from '../src/index.js';
import { agentcellAsync, listen, makeSandbox, type Sandbox } from './helpers.js';
import { makeCerts } from './make-certs.js';

/**
 * On bwrap the cell's bridge hands its 127.0.0.1:3128 listener to agentcell over node's IPC
 * channel and exits (docs/security.md, "handoff"). Attacked from inside real cells: the
 * command finds no channel, no bridge and no listener of its own; a cell that writes
 * garbage or descriptors on the channel (a hostile image's node or shell) can't end or
 * confuse agentcell; a handoff that fails runs no command.
 */

/** Every process in the cell, and every socket any of them holds (the channel and a relay's would be sockets). */
const CELL_PROBE = [
  'for p in /proc/[0-9]*; do echo "proc $(tr "\\0" " " <"$p/cmdline")"; done',
  // 0–2 are the test's pipes (node makes them socket pairs).
  'for f in /proc/[0-9]*/fd/*; do case $f in */fd/[012]) continue;; esac; l=$(readlink "$f" 2>/dev/null) && case $l in socket:*) echo "sock $f";; esac; done',
  // Into a file: a pipe or $(…) would show the shell's own end of it.
  'ls /proc/$$/fd >/tmp/fds; echo "fds $(tr "\\n" " " </tmp/fds)"',
  'env | grep "^NODE_CHANNEL" || echo "no channel env"',
  'tr "\\0" "\\n" </proc/$$/environ | grep "^NODE_CHANNEL" || echo "no channel environ"',
].join('; ');

describe('egress listener handoff (bwrap)', () => {
  let sb: Sandbox;
  let certDir: string;
  let https: HttpsServer;
  let httpsPort: number;

  before(async () => {
    certDir = mkdtempSync(join(tmpdir(), 'agentcell-handoff-'));
    const certs = await makeCerts(certDir, 'agentcell', ['api.test']);
    https = createHttpsServer({ key: certs.key, cert: certs.cert }, (_req, res) => res.end('hello through\n'));
    httpsPort = await listen(https);
    sb = makeSandbox();
    copyFileSync(certs.ca, join(sb.workspace, 'test-ca.crt'));
    writeFileSync(
      join(sb.workspace, 'agentcell.toml'),
      ['[network]', 'allow = ["api.test"]', 'resolve = { "api.test" = "127.0.0.1" }', ''].join('\n'),
    );
  });
  after(() => {
    https.close();
    https.closeAllConnections();
    sb.cleanup();
    rmSync(certDir, { recursive: true, force: true });
  });

  const run = (script: string) =>
    agentcellAsync(sb, ['run', '--backend', 'bwrap', '--network', 'allowlist', '--', 'bash', '-c', script]);

  it('traffic reaches the gateway with no bridge process, no channel and no socket left in the cell', async () => {
    // Control: a process started in the cell (sleep) and a socket opened there (fd 7) are seen by the probe.
    const r = await run(
      [
        `curl -sS --cacert test-ca.crt https://api.test:${httpsPort}/`,
        'sleep 30 & exec 7<>/dev/tcp/127.0.0.1/3128',
        CELL_PROBE,
        'exec 7>&-; kill %1',
      ].join('\n'),
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^hello through$/m);
    assert.match(r.stdout, /^proc sleep 30 $/m, 'the probe lists the cell’s processes');
    assert.match(r.stdout, /^sock \/proc\/\d+\/fd\/7$/m, 'the probe finds a socket a process holds');
    const procs = r.stdout.split('\n').filter((l) => l.startsWith('proc '));
    // pid 1 (bwrap, whose argv holds the prelude), the command (bash), sleep and the probe's subshells: no bridge (node …/agentcell-bridge.cjs).
    assert.ok(!procs.some((l) => /^proc \S*node \S*agentcell-bridge/.test(l)), procs.join('\n'));
    const sockets = r.stdout.split('\n').filter((l) => l.startsWith('sock '));
    assert.deepEqual(sockets.length, 1, `only the control's socket: ${sockets.join(', ')}`);
    const fds = /^fds (.*)$/m.exec(r.stdout)?.[1]?.trim().split(' ');
    assert.deepEqual(fds, ['0', '1', '2', '7'], 'the command has 0–2 and its own socket, not the channel (6)');
    assert.match(r.stdout, /^no channel env$/m);
    assert.match(r.stdout, /^no channel environ$/m);
  });

  it('no process in the cell holds the listener: with agentcell gone it is gone', async () => {
    // The listener's inode from the cell's /proc/net/tcp (port 3128 = 0C38, state 0A = LISTEN),
    // then every descriptor of every process in the cell. Control: a listener of the cell's own (node, port 4000 = 0FA0) is found.
    const holders = (port: string) =>
      [
        `i=$(awk '$2 ~ /:${port}$/ && $4 == "0A" {print $10}' /proc/net/tcp)`,
        `echo "inode-${port} $i"`,
        `for f in /proc/[0-9]*/fd/*; do [ "$(readlink "$f" 2>/dev/null)" = "socket:[$i]" ] && echo "holder-${port} $f"; done`,
      ].join('; ');
    const r = await run(
      [
        `node -e 'require("net").createServer().listen(4000, "127.0.0.1", () => console.log("up"))' > /tmp/up & until [ -s /tmp/up ]; do sleep 0.05; done`,
        holders('0C38'),
        holders('0FA0'),
        'kill %1',
      ].join('\n'),
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^inode-0C38 \d+$/m, 'the cell has a listener on 3128');
    assert.match(r.stdout, /^holder-0FA0 /m, 'control: a cell process holding a listener is found');
    assert.doesNotMatch(r.stdout, /^holder-0C38 /m, 'no cell process holds the proxy listener');
  });

  it('--dry-run shows the handoff prelude and the channel descriptor', async () => {
    const r = await agentcellAsync(sb, [
      'run',
      '--backend',
      'bwrap',
      '--dry-run',
      '--json',
      '--network',
      'allowlist',
      '--',
      'true',
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /agentcell-bridge\.cjs handoff 3128/);
    assert.match(r.stdout, /NODE_CHANNEL_FD/);
    assert.doesNotMatch(r.stdout, /agentcell-bridge\.cjs listen/);
  });

  describe('a hostile cell on the channel (its node or shell: a directory rootfs’s, or one the policy’s env bends)', () => {
    let prepared: PreparedRun;
    let stopGateway: (() => Promise<unknown>) | undefined;
    let adoptListener: RunControl['adoptListener'];
    let hostile: Sandbox;
    /** Bound rw at /run/out: the cell reports there (world-writable: a root caller's cell is another host uid). */
    let outDir: string;

    before(async () => {
      hostile = makeSandbox({ 'README.md': 'hi\n' });
      outDir = mkdtempSync(join(tmpdir(), 'agentcell-handoff-out-'));
      chmodSync(outDir, 0o777);
      prepared = await prepareRun({
        argv: ['sh', '-c', 'echo COMMAND-RAN'],
        tty: false,
        paths: agentcellPaths(hostile.env),
        hostEnv: hostile.env,
        cwd: hostile.workspace,
        backend: 'bwrap',
        workspaceMode: 'readonly',
        network: 'allowlist',
        allow: ['api.test'],
      });
      const egress = prepared.spec.egress;
      assert.ok(prepared.egress && egress);
      const gateway = await startRunGateway(mutableCopy<RunEgress>(prepared.egress), egress.socketPath, {
        cell: prepared.cell,
        run: 'handoff-test',
      });
      adoptListener = gateway.adoptListener;
      stopGateway = () => gateway.stop();
    });
    after(async () => {
      await stopGateway?.();
      hostile.cleanup();
      rmSync(outDir, { recursive: true, force: true });
    });

    /** The prepared cell without its canaries (their dir is made per run by the pipeline). */
    function bareSpec(): CellSpec {
      const spec = mutableCopy<CellSpec>(prepared.spec);
      return { ...spec, mounts: spec.mounts.filter((m) => m.target !== CELL_CANARY_DIR) };
    }

    /** The cell with `prelude` in place of the bridge's, run by the real backend; stdout and the exit code. */
    async function withPrelude(prelude: string, control: RunControl): Promise<{ exitCode: number; stdout: string }> {
      const egress = prepared.spec.egress;
      assert.ok(egress);
      const spec: CellSpec = {
        ...bareSpec(),
        argv: ['true'],
        egress: { ...mutableCopy<CellEgress>(egress), handoffPrefix: ['/bin/bash', '-c', prelude, 'hostile'] },
      };
      const out = join(outDir, 'out');
      spec.mounts = [...spec.mounts, { source: outDir, target: '/run/out', mode: 'rw' }];
      rmSync(out, { force: true });
      const outcome = await prepared.backend.run(spec, prepared.backend.plan(spec), control);
      const stdout = existsSync(out) ? readFileSync(out, 'utf8') : '';
      return { exitCode: outcome.exitCode, stdout };
    }

    it('control: node’s own reader dies of a garbage line or a stray ACK on the channel', () => {
      for (const line of ['hello garbage', '{"cmd":"NODE_HANDLE_ACK"}']) {
        const parent = spawnSync(
          process.execPath,
          [
            '-e',
            `const c = require("child_process").spawn("sh", ["-c", 'printf "%s\\n" "$L" >&3'], { env: { L: process.env.L }, stdio: ["ignore", "ignore", "ignore", "ipc"] }); c.on("message", () => {}); setTimeout(() => console.log("ALIVE"), 500);`,
          ],
          { encoding: 'utf8', timeout: 10_000, env: { ...process.env, L: line } },
        );
        assert.notEqual(parent.status, 0, line);
        assert.doesNotMatch(parent.stdout, /ALIVE/, line);
      }
    });

    it('garbage, a stray ACK and a flood on the channel neither end agentcell nor reach the command', async () => {
      for (const payload of [
        'echo "hello garbage" >&$NODE_CHANNEL_FD',
        `echo '{"cmd":"NODE_HANDLE_ACK"}' >&$NODE_CHANNEL_FD`,
        `echo '{"cmd":"NODE_HANDLE","type":"constructor","msg":{}}' >&$NODE_CHANNEL_FD`,
        'head -c 50000000 /dev/zero >&$NODE_CHANNEL_FD',
      ]) {
        // After writing, the hostile prelude waits for the host to close the channel (EOF) and says so.
        const r = await withPrelude(
          `${payload} 2>/dev/null; timeout 10 cat <&$NODE_CHANNEL_FD >/dev/null; echo "eof $?" >/run/out/out`,
          { adoptListener },
        );
        // 0: closed; 1: reset (the host closed with the flood unread); 124 would be a host that never closed.
        assert.match(r.stdout, /^eof [01]\n$/, payload);
        assert.equal(r.exitCode, 0, payload);
      }
      // The host still serves: a real handoff after all that works.
      const ok = await withPrelude(
        `/run/agentcell/node /run/agentcell/agentcell-bridge.cjs handoff ${CELL_PROXY_PORT} && exec 5<>/dev/tcp/127.0.0.1/${CELL_PROXY_PORT} && printf 'GET http://x/ HTTP/1.0\\r\\n\\r\\n' >&5 && head -1 <&5 >/run/out/out`,
        { adoptListener },
      );
      assert.match(ok.stdout, /^HTTP\/1\.1 407 /, 'the adopted listener answers, and still wants the token');
    });

    it('descriptors it sends: a listener on another port or a unix socket is refused; one after the right one is not taken', async () => {
      const send = (what: string) =>
        [
          `/run/agentcell/node -e '`,
          `const net = require("net");`,
          `const servers = ${what};`,
          `Promise.all(servers.map((s) => new Promise((r) => s.once("listening", r)))).then(() => {`,
          `  for (const s of servers) process.send({ agentcell: "listener" }, s);`,
          `  process.on("message", (m) => { console.log("reply " + JSON.stringify(m)); process.exit(0); });`,
          `  setTimeout(() => { console.log("no reply"); process.exit(0); }, 5000);`,
          `});' >/run/out/out;`,
          // After the node exited: is anything listening where it listened?
          `(exec 5<>/dev/tcp/127.0.0.1/4000 && echo "4000 open") 2>/dev/null >>/run/out/out || echo "4000 refused" >>/run/out/out`,
        ].join('');
      const wrongPort = await withPrelude(send('[net.createServer().listen(4000, "127.0.0.1")]'), { adoptListener });
      const refused = `reply ${JSON.stringify(LISTENER_REFUSED)}\n4000 refused\n`;
      assert.equal(wrongPort.stdout, refused);
      const unix = await withPrelude(send('[net.createServer().listen("/tmp/x.sock")]'), { adoptListener });
      assert.equal(unix.stdout, refused);
      // The first is the right one: adopted; the second (port 4000) is never taken, and gone with the cell's node.
      const several = await withPrelude(
        send(
          `[net.createServer().listen(${CELL_PROXY_PORT}, "127.0.0.1"), net.createServer().listen(4000, "127.0.0.1")]`,
        ),
        { adoptListener },
      );
      assert.equal(several.stdout, `reply ${JSON.stringify(LISTENER_ADOPTED)}\n4000 refused\n`);
    });

    /** The handoff prelude with the helper chosen: the rootfs's perl (x64, arm64) or node's bridge (any other arch). */
    function helperSpec(helper: 'perl' | 'node', node = CELL_BRIDGE_NODE, perl?: string): CellSpec {
      const egress = prepared.spec.egress;
      assert.ok(egress);
      const spec: CellSpec = { ...bareSpec(), argv: ['sh', '-c', 'echo COMMAND-RAN >/run/out/out'] };
      spec.mounts = [...spec.mounts, { source: outDir, target: '/run/out', mode: 'rw' }];
      const arch = helper === 'perl' ? process.arch : 'riscv64';
      const handoffPrefix = withHandoff(node, [], arch, perl);
      return { ...spec, egress: { ...mutableCopy<CellEgress>(egress), handoffPrefix } };
    }

    it('fails closed: a listener agentcell does not take runs no command (exit 125), with perl’s helper or node’s', async () => {
      const out = join(outDir, 'out');
      const adopters: RunControl[] = [
        {},
        { adoptListener: () => false },
        {
          adoptListener: () => {
            throw new Error('an adopter that fails');
          },
        },
      ];
      for (const helper of ['perl', 'node'] as const) {
        const spec = helperSpec(helper);
        for (const control of adopters) {
          rmSync(out, { force: true });
          const outcome = await prepared.backend.run(spec, prepared.backend.plan(spec), control);
          assert.equal(outcome.exitCode, 125, helper);
          assert.equal(existsSync(out), false, `the command did not run (${helper})`);
        }
        // Control: with the gateway taking it, the same cell runs the command.
        const outcome = await prepared.backend.run(spec, prepared.backend.plan(spec), { adoptListener });
        assert.equal(outcome.exitCode, 0, helper);
        assert.equal(existsSync(out), true, helper);
      }
    });

    it('a perl without its Socket module hands nothing over and node’s bridge does; a perl that fails after sending fails closed', async () => {
      const out = join(outDir, 'out');
      // Bound at /run/out: the real perl with no module path (the helper loads Socket at run time), and a perl that exits 1.
      writeFileSync(
        join(outDir, 'perl-without-socket'),
        `#!/bin/sh\nexec /usr/bin/perl -e 'BEGIN { @INC = () }' "$@"\n`,
        {
          mode: 0o755,
        },
      );
      writeFileSync(join(outDir, 'perl-failing'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
      for (const [perl, node, exitCode] of [
        ['/run/out/perl-without-socket', CELL_BRIDGE_NODE, 0],
        ['/run/out/perl-without-socket', '/nonexistent/node', 125],
        ['/run/out/perl-failing', CELL_BRIDGE_NODE, 125],
      ] as const) {
        rmSync(out, { force: true });
        const spec = helperSpec('perl', node, perl);
        const outcome = await prepared.backend.run(spec, prepared.backend.plan(spec), { adoptListener });
        assert.equal(outcome.exitCode, exitCode, `${perl}, ${node}`);
        assert.equal(existsSync(out), exitCode === 0, `${perl}, ${node}`);
      }
    });

    it('perl’s helper needs no node in the cell; node’s bridge does (no node: exit 125)', async () => {
      const out = join(outDir, 'out');
      for (const [helper, exitCode] of [
        ['perl', 0],
        ['node', 125],
      ] as const) {
        rmSync(out, { force: true });
        const spec = helperSpec(helper, '/nonexistent/node');
        const outcome = await prepared.backend.run(spec, prepared.backend.plan(spec), { adoptListener });
        assert.equal(outcome.exitCode, exitCode, helper);
        assert.equal(existsSync(out), exitCode === 0, helper);
      }
    });
  });

  it('a closed gateway closes an adopted listener: connections are refused', async () => {
    const gateway = createEgressGateway({ rules: { allow: [] }, token: 'tok', tcp: { port: 0 } });
    await gateway.listen();
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const address = listener.address();
    assert.ok(typeof address === 'object' && address);
    assert.equal(gateway.adopt(listener), true);
    const first = await ask(address.port);
    assert.match(first, /^HTTP\/1\.1 407 /, 'served by the gateway, which wants the token');
    await gateway.close();
    await assert.rejects(ask(address.port), /ECONNREFUSED/);
    assert.equal(gateway.adopt(createServer()), false, 'a closed gateway adopts nothing');
  });
});

function ask(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('close', () => resolve(text));
    socket.write('GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n');
  });
}
