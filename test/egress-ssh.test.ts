import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentcellAsync, cellDirOf, listTree, makeSandbox, type CliResult, type Sandbox } from './helpers.js';

/**
 * SSH egress: each cell has its own ed25519 key (`agentcell pubkey`), bound read-only
 * into the cell's ~/.ssh, and ssh/git reach allowed hosts through the gateway (a CONNECT
 * tunnel opened by the bridge as ProxyCommand). A real OpenSSH sshd listens on
 * 127.0.0.1, named git.test through `[network] resolve`; nothing leaves loopback.
 */

function runCli(sb: Sandbox, args: string[]): Promise<CliResult> {
  return agentcellAsync(sb, args);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('SSH egress: the cell’s own key, through the gateway (bwrap, real sshd)', () => {
  let sb: Sandbox;
  let dir: string;
  let sshd: ChildProcess;
  let port: number;
  let sshdLog = '';
  const user = userInfo().username;

  before(async () => {
    sb = makeSandbox();
    dir = mkdtempSync(join(tmpdir(), 'agentcell-sshd-'));
    port = await freePort();
    const keygen = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
    assert.equal(keygen.status, 0, 'ssh-keygen is needed (openssh-client)');
    writeFileSync(join(dir, 'authorized_keys'), '', { mode: 0o600 });
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${join(dir, 'host_key')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        'StrictModes no',
        'UsePAM no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        'PermitRootLogin prohibit-password',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    );
    // sshd started as root wants its privilege separation directory (the package's service makes it).
    if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    sshd.stderr?.setEncoding('utf8').on('data', (d: string) => (sshdLog += d));
    for (let i = 0; i < 100 && !(await accepts(port)); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(await accepts(port), `sshd (openssh-server) did not start: ${sshdLog}`);
    writeFileSync(
      join(sb.workspace, 'agentcell.toml'),
      ['[network]', 'mode = "allowlist"', 'allow = ["git.test"]', 'resolve = { "git.test" = "127.0.0.1" }', ''].join(
        '\n',
      ),
    );
  });
  after(() => {
    sshd.kill();
    sb.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes the cell’s key on first use, private half 0600 in the cell’s state, and keeps it after', async () => {
    const dry = await runCli(sb, ['pubkey', '--dry-run', '--json']);
    assert.equal(dry.status, 0, dry.stderr);
    assert.equal((JSON.parse(dry.stdout) as { dryRun: boolean }).dryRun, true);
    assert.deepEqual(listTree(sb.agentcellHome), [], 'a dry run wrote nothing');

    const first = await runCli(sb, ['pubkey', '--json']);
    assert.equal(first.status, 0, first.stderr);
    const key = JSON.parse(first.stdout) as { publicKey: string; fingerprint: string; created: boolean };
    assert.match(key.publicKey, /^ssh-ed25519 AAAA[\w+/=]+ agentcell-cell-/);
    assert.match(key.fingerprint, /^SHA256:/);
    assert.equal(key.created, true);
    const privateKey = join(cellDirOf(sb), 'ssh', 'id_ed25519');
    assert.equal(statSync(privateKey).mode & 0o777, 0o600);
    assert.equal(statSync(join(cellDirOf(sb), 'ssh')).mode & 0o777, 0o700);
    const again = await runCli(sb, ['pubkey']);
    assert.equal(again.stdout.trim(), key.publicKey, 'the same key on every use');
    writeFileSync(join(dir, 'authorized_keys'), `${key.publicKey}\n`);
  });

  it('ssh and git from inside the cell reach an allowed host through the gateway with the cell’s key', async () => {
    const repo = join(dir, 'repo.git');
    assert.equal(spawnSync('git', ['init', '-q', '--bare', repo]).status, 0);
    const r = await runCli(sb, [
      'run',
      '--',
      'sh',
      '-c',
      [
        `ssh -p ${port} ${user}@git.test echo hello-from-sshd; echo "ssh=$?"`,
        `git ls-remote ssh://${user}@git.test:${port}${repo} >/dev/null; echo "git=$?"`,
        'stat -c "%a" ~/.ssh/id_ed25519',
        'echo tamper >> ~/.ssh/id_ed25519 2>/dev/null && echo key=writable || echo key=readonly',
      ].join('\n'),
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^hello-from-sshd\nssh=0$/m, `${r.stderr}\n${sshdLog}`);
    assert.match(r.stdout, /^git=0$/m, r.stderr);
    assert.match(r.stdout, /^600$/m);
    assert.match(r.stdout, /^key=readonly$/m);
    // The connection went through the gateway: logged as an allowed CONNECT to git.test.
    const log = await runCli(sb, ['egress', 'log', '--json']);
    const events = log.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; host: string; port: number; decision: string });
    assert.ok(
      events.some((e) => e.kind === 'connect' && e.host === 'git.test' && e.port === port && e.decision === 'allow'),
    );
  });

  it('refuses a host the policy does not allow, with the gateway’s reason (positive control: git.test works)', async () => {
    const r = await runCli(sb, [
      'run',
      '--',
      'sh',
      '-c',
      [
        `ssh -o ConnectTimeout=10 -p ${port} ${user}@other.test true; echo "denied=$?"`,
        `ssh -p ${port} ${user}@git.test true; echo "allowed=$?"`,
      ].join('\n'),
    ]);
    assert.match(r.stdout, /^denied=255$/m);
    assert.match(r.stderr, /denied other\.test:\d+: not-allowed/);
    assert.match(r.stdout, /^allowed=0$/m, r.stderr);
  });

  it('keeps the private key out of the workspace and out of other cells', async () => {
    const body = readFileSync(join(cellDirOf(sb), 'ssh', 'id_ed25519'), 'utf8');
    // Past the header lines that every unencrypted ed25519 key shares: the key material.
    const keyLine = body.split('\n')[3] ?? '';
    assert.ok(keyLine.length > 20);
    // Nothing in the host workspace holds it or is named like it, after the runs above.
    for (const rel of listTree(sb.workspace)) {
      assert.doesNotMatch(rel, /id_ed25519/);
      const full = join(sb.workspace, rel);
      if (statSync(full).isFile()) assert.ok(!readFileSync(full, 'utf8').includes(keyLine), `${rel} holds the key`);
    }
    // Another cell of the same workspace: no key until it makes its own, and then another one.
    const before = await runCli(sb, [
      'run',
      '--cell',
      'other',
      '--',
      'sh',
      '-c',
      'ls -a ~/.ssh 2>&1; grep -r . ~ 2>/dev/null | wc -l',
    ]);
    assert.equal(before.status, 0, before.stderr);
    assert.match(before.stdout, /No such file or directory/);
    const made = await runCli(sb, ['pubkey', '--cell', 'other']);
    const mine = await runCli(sb, ['pubkey']);
    assert.notEqual(made.stdout.trim(), mine.stdout.trim());
    const other = await runCli(sb, ['run', '--cell', 'other', '--', 'sh', '-c', 'cat ~/.ssh/id_ed25519']);
    assert.equal(other.status, 0, other.stderr);
    assert.match(other.stdout, /BEGIN OPENSSH PRIVATE KEY/);
    assert.ok(!other.stdout.includes(keyLine), 'another cell sees this cell’s private key');
    // And the other cell's key does not open this cell's server account.
    const login = await runCli(sb, [
      'run',
      '--cell',
      'other',
      '--',
      'sh',
      '-c',
      `ssh -p ${port} ${user}@git.test true; echo "login=$?"`,
    ]);
    assert.match(login.stdout, /^login=255$/m);
  });
});
