import assert from 'node:assert/strict';
import { spawnSync, type StdioOptions } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentcell, CLI, inCell, makeSandbox, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS } from './backends-under-test.js';

/**
 * The cell's process boundary (DESIGN.md invariant 10), attacked from inside a cell on
 * every backend under test: the kernel's tunables under /proc, and descriptors the caller
 * left open. Each attack sits beside a control showing the probe detects the leak.
 */

// Writes a tunable's own value back (no change even where it works), and opens
// sysrq-trigger for writing without writing a byte.
const PROC_PROBE = [
  'f=/proc/sys/kernel/printk_ratelimit_burst',
  'v=$(cat $f)',
  '(echo "$v" > $f) 2>/dev/null && echo SYSCTL-WRITABLE',
  '(printf "" > /proc/sysrq-trigger) 2>/dev/null && echo SYSRQ-WRITABLE',
  'echo probed',
].join('; ');

const FD_PROBE = [
  'ls /proc/self/fd | tr "\\n" " "; echo',
  '(ls /proc/self/fd/300/ >/dev/null 2>&1) && echo DIR-FD-OPEN',
  '(echo leaked >> /proc/self/fd/301) 2>/dev/null && echo FILE-FD-WRITABLE',
  'echo probed',
].join('; ');

for (const backend of TEST_BACKENDS) {
  describe(`host boundary on ${backend}`, () => {
    let sb: Sandbox;
    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({ 'README.md': 'hello\n' });
    });
    after(() => sb.cleanup());

    it('cannot write /proc/sys or /proc/sysrq-trigger, whoever runs agentcell', () => {
      if (process.getuid?.() === 0) {
        // Control: the probe sees a writable tunable where one is (root on the host).
        const outside = spawnSync('sh', ['-c', PROC_PROBE], { encoding: 'utf8' });
        assert.match(outside.stdout, /SYSCTL-WRITABLE\n/); // sysrq-trigger only where the host kernel has one
      }
      for (const extra of [[], ['--mode', 'development', '--root']]) {
        const r = inCell(sb, PROC_PROBE, [...backendArgs(backend), ...extra]);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout, 'probed\n', `${extra.join(' ')}: ${r.stdout}`);
      }
    });

    it('descriptors the caller left open do not reach the cell', () => {
      const dir = mkdtempSync(join(tmpdir(), 'agentcell-fd-'));
      const file = join(dir, 'host-file');
      const dirFd = openSync(dir, 'r');
      const fileFd = openSync(file, 'a');
      try {
        // High numbers, as a shell's `exec 300</root` leaves them (low ones a shell may reuse on the way).
        const stdio: StdioOptions = [
          ...(['pipe', 'pipe', 'pipe'] as const),
          ...Array<'ignore'>(297).fill('ignore'),
          dirFd,
          fileFd,
        ];
        // Control: the same probe, started the same way outside a cell, sees both.
        const outside = spawnSync('sh', ['-c', FD_PROBE], { encoding: 'utf8', stdio });
        assert.match(outside.stdout, /DIR-FD-OPEN\nFILE-FD-WRITABLE/);
        rmSync(file);
        closeSync(openSync(file, 'a'));
        const r = spawnSync(process.execPath, [CLI, 'run', ...backendArgs(backend), '--', 'sh', '-c', FD_PROBE], {
          cwd: sb.workspace,
          env: sb.env,
          encoding: 'utf8',
          stdio,
          timeout: 60_000,
        });
        assert.equal(r.status, 0, r.stderr);
        assert.doesNotMatch(r.stdout, /DIR-FD-OPEN|FILE-FD-WRITABLE/);
        assert.match(r.stdout, /probed/);
        const listed = (r.stdout.split('\n')[0] ?? '').trim().split(/\s+/).map(Number);
        assert.ok(!listed.includes(300) && !listed.includes(301), `fds in the cell: ${listed.join(' ')}`);
        assert.equal(readFileSync(file, 'utf8'), '', 'nothing was written through the fd');
      } finally {
        closeSync(dirFd);
        closeSync(fileFd);
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('a gateway cell’s command gets no IPC channel and no NODE_CHANNEL_* (bwrap hands its listener over one)', () => {
      // Into a file: a pipe would show the shell's own end of it.
      const probe =
        'ls /proc/$$/fd >/tmp/fds; tr "\\n" " " </tmp/fds; echo; env | grep "^NODE_CHANNEL" || echo no-channel-env';
      // Control: a process given node's IPC channel (as bwrap is) has both, and the probe sees them.
      const outside = spawnSync(
        process.execPath,
        [
          '-e',
          `require("child_process").spawn("sh", ["-c", ${JSON.stringify(probe)}], { stdio: ["ignore", "inherit", "inherit", "ignore", "ignore", "ignore", "ipc"] }).on("exit", () => process.exit(0))`,
        ],
        { encoding: 'utf8' },
      );
      assert.match(outside.stdout, /^([\d ]* )?6 /);
      assert.match(outside.stdout, /^NODE_CHANNEL_FD=6$/m);
      const r = inCell(sb, probe, [...backendArgs(backend), '--network', 'allowlist']);
      assert.equal(r.status, 0, r.stderr);
      const [fds = '', env = ''] = r.stdout.split('\n');
      const listed = fds.trim().split(' ').map(Number);
      // 0–2, and the shell's own (dash keeps a descriptor at 10 and up): nothing agentcell passed (6).
      assert.ok(listed.every((fd) => fd <= 2 || fd >= 10) && !listed.includes(6), `fds in the command: ${fds}`);
      assert.equal(env, 'no-channel-env');
    });
  });
}

/**
 * bwrap's launch runs on the host with the cell's environment (bwrap hands it on to the
 * command): a tool it names bare would be looked up along the cell's PATH, which a policy's
 * `[env]` sets, and would run outside the cell. Fakes of bwrap and prlimit first on that PATH
 * note each call in a directory anyone can write (a root caller's launch runs as the cell's
 * shifted uid part of the way); none may be called.
 */
describe('the cell’s PATH does not pick the tools that launch it (bwrap)', () => {
  let sb: Sandbox;
  let dir: string;
  before(() => {
    sb = makeSandbox({ 'README.md': 'hello\n' });
    dir = mkdtempSync(join(tmpdir(), 'agentcell-path-'));
  });
  after(() => {
    sb.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fakes of bwrap and prlimit first on a policy’s [env] PATH never run; the cell still gets that PATH', () => {
    const bin = join(dir, 'bin');
    const calls = join(dir, 'calls');
    mkdirSync(bin);
    mkdirSync(calls);
    chmodSync(dir, 0o755);
    chmodSync(calls, 0o1777);
    for (const tool of ['bwrap', 'prlimit']) {
      const real = spawnSync('sh', ['-c', `command -v ${tool}`], {
        encoding: 'utf8',
        env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
      }).stdout.trim();
      assert.match(real, /^\//, `${tool} is installed`);
      writeFileSync(join(bin, tool), `#!/bin/sh\necho "$0" >> ${calls}/log\nexec ${real} "$@"\n`, { mode: 0o755 });
    }
    // Control: a fake that runs leaves its line.
    assert.equal(spawnSync(join(bin, 'prlimit'), ['--version']).status, 0);
    assert.match(readFileSync(join(calls, 'log'), 'utf8'), /prlimit/);
    rmSync(join(calls, 'log'));

    const path = `${bin}:/usr/bin:/bin`;
    writeFileSync(join(sb.workspace, 'agentcell.toml'), `[env]\nPATH = "${path}"\n`);
    const plan = JSON.parse(
      agentcell(['run', '--backend', 'bwrap', '--dry-run', '--json', '--', 'true'], { cwd: sb.workspace, env: sb.env })
        .stdout,
    ) as { plan: { argv: string[] } };
    for (const tool of ['bwrap', 'prlimit'])
      assert.ok(
        plan.plan.argv.some((arg) => arg.startsWith('/') && arg.endsWith(`/${tool}`)),
        `${tool} by absolute path in ${plan.plan.argv.slice(0, 3).join(' ')}…`,
      );
    const r = inCell(sb, 'echo "$PATH"', ['--backend', 'bwrap']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${path}\n`);
    assert.equal(existsSync(join(calls, 'log')), false, 'a fake on the cell’s PATH ran on the host');
  });
});

describe('root-only files under the host /etc (bwrap host rootfs; OCI cells see their image’s /etc)', () => {
  it('the walk finds what an ordinary user could not read, and masks a closed directory whole', async () => {
    const { unreadableEtcEntries } = await import('../src/backends/host-rootfs.js');
    const root = mkdtempSync(join(tmpdir(), 'agentcell-etc-'));
    try {
      writeFileSync(join(root, 'open.conf'), 'x', { mode: 0o644 });
      writeFileSync(join(root, 'closed.conf'), 'x', { mode: 0o600 });
      mkdirSync(join(root, 'open.d'), { mode: 0o755 });
      writeFileSync(join(root, 'open.d', 'key'), 'x', { mode: 0o640 });
      mkdirSync(join(root, 'closed.d'), { mode: 0o700 });
      writeFileSync(join(root, 'closed.d', 'inner'), 'x', { mode: 0o644 });
      const found = unreadableEtcEntries(root).map((m) => `${m.kind} ${m.target.slice(root.length)}`);
      assert.deepEqual(found.sort(), ['dir /closed.d', 'file /closed.conf', 'file /open.d/key']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('a root-only file and directory in /etc are unreadable from a cell, as user and as --root', () => {
    const sb = makeSandbox({ 'README.md': 'hello\n' });
    const tag = `${process.pid}-${Date.now()}`;
    const file = `/etc/agentcell-test-secret-${tag}`;
    const dir = `/etc/agentcell-test-dir-${tag}`;
    const probe = `cat ${file} 2>/dev/null && echo FILE-READ; cat ${dir}/inner 2>/dev/null && echo DIR-READ; echo probed`;
    try {
      if (process.getuid?.() !== 0) {
        // Unprivileged: no file can be made in /etc; the kernel's permission check is the guard.
        const r = inCell(sb, 'cat /etc/shadow 2>/dev/null && echo READ; echo probed', ['--backend', 'bwrap']);
        assert.equal(r.stdout, 'probed\n', r.stderr);
        return;
      }
      writeFileSync(file, 'canary-etc\n', { mode: 0o600 });
      mkdirSync(dir, { mode: 0o700 });
      writeFileSync(join(dir, 'inner'), 'canary-dir\n', { mode: 0o644 });
      // Control: root reads both outside a cell.
      assert.match(
        spawnSync('sh', ['-c', probe], { encoding: 'utf8' }).stdout,
        /canary-etc\nFILE-READ\ncanary-dir\nDIR-READ/,
      );
      for (const extra of [[], ['--mode', 'development', '--root']]) {
        const r = inCell(sb, probe, ['--backend', 'bwrap', ...extra]);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout, 'probed\n', `${extra.join(' ')}: ${r.stdout}`);
      }
      assert.equal(readFileSync(file, 'utf8'), 'canary-etc\n', 'the host file is unchanged');
    } finally {
      rmSync(file, { force: true });
      rmSync(dir, { recursive: true, force: true });
      sb.cleanup();
    }
  });
});
