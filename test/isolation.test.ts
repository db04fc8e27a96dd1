import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentcell, inCell, makeSandbox, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS } from './backends-under-test.js';

/**
 * The security invariants, attacked from inside a cell. Each attack has a positive
 * control (the same technique succeeding where it is allowed), so a broken harness
 * cannot pass for a secure cell. The same attacks run on every backend under test
 * (AGENTCELL_TEST_BACKENDS, see backends-under-test.ts).
 */

const CANARY = `canary-${process.pid}-${Date.now()}`;

function listen(server: Server, address: string | number, host?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    if (host === undefined) server.listen(address as string, () => resolve());
    else server.listen(address as number, host, () => resolve());
  });
}

for (const backend of TEST_BACKENDS) {
  describe(`isolation on ${backend}`, () => {
    let sb: Sandbox;
    const run = (script: string, args: string[] = [], env: NodeJS.ProcessEnv = {}) =>
      inCell(sb, script, [...backendArgs(backend), ...args], env);

    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({
        'README.md': 'hello\n',
        '.env': `API_KEY=${CANARY}\n`,
        'config/prod.pem': CANARY,
        'deep/a/b/id_ed25519': CANARY,
        '.ssh/config': CANARY,
      });
      mkdirSync(join(sb.home, '.ssh'), { recursive: true });
      writeFileSync(join(sb.home, '.ssh', 'id_canary'), CANARY);
      mkdirSync(join(sb.home, '.aws'), { recursive: true });
      writeFileSync(join(sb.home, '.aws', 'credentials'), CANARY);
    });
    after(() => sb.cleanup());

    it('positive control: the workspace is readable, and writes land in the cell, not the host', () => {
      const r = run('cat README.md && echo made > made.txt && cat made.txt');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /hello\nmade/);
      assert.equal(existsSync(join(sb.workspace, 'made.txt')), false);
      const diff = agentcell(['diff', '--json'], { cwd: sb.workspace, env: sb.env });
      assert.deepEqual(JSON.parse(diff.stdout), [{ path: 'made.txt', change: 'added', kind: 'file' }]);
      const direct = run('echo direct > direct.txt', ['--mode', 'development', '--workspace-mode', 'direct']);
      assert.equal(direct.status, 0, direct.stderr);
      assert.equal(readFileSync(join(sb.workspace, 'direct.txt'), 'utf8'), 'direct\n');
    });

    it('cannot read canaries under $HOME (the HOME agentcell was given)', () => {
      const r = run(
        `cat "$HOME/.ssh/id_canary" "$HOME/.aws/credentials" ${sb.home}/.ssh/id_canary; echo "rc=$?"; ls -A "$HOME"`,
      );
      assert.equal(r.stdout, 'rc=1\n', 'the cat failed and the home is empty');
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY));
    });

    it("cannot read a canary under the real user's home directory", () => {
      const realHome = homedir();
      const canaryFile = join(realHome, `.agentcell-canary-${process.pid}`);
      writeFileSync(canaryFile, CANARY);
      try {
        for (const args of [[], ['--root']]) {
          // Homes are empty (no file at all, not even the image's own /root/.bashrc, which
          // podman's tmpfs would copy up): /etc/skel shows `find` lists dotfiles where there are some.
          const r = run(
            `cat ${canaryFile}; ls -a ${realHome}; echo homes:; find /home /root -mindepth 1 ! -type d; echo skel:; find /etc/skel -mindepth 1 ! -type d`,
            args,
            { HOME: realHome },
          );
          assert.equal(r.status, 0, `the run ran: no enforcement canary stopped it (${args.join(' ')}): ${r.stderr}`);
          assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY));
          assert.doesNotMatch(r.stdout, /agentcell-canary/);
          assert.match(r.stdout, /homes:\nskel:\n\/etc\/skel\/\.\w+/, `homes hold no file (${args.join(' ')})`);
        }
      } finally {
        rmSync(canaryFile, { force: true });
      }
    });

    it('cannot read host secret files under /etc even as root in the cell', () => {
      for (const args of [[], ['--root']]) {
        const r = run('cat /etc/shadow /etc/gshadow 2>&1; echo "rc=$?"', args);
        assert.doesNotMatch(r.stdout, /^root:/m);
        assert.match(r.stdout, /rc=1/);
      }
    });

    it('does not inherit host environment secrets, unless --env names them', () => {
      const env = { GITHUB_TOKEN: CANARY, AWS_SECRET_ACCESS_KEY: CANARY, ANTHROPIC_API_KEY: CANARY };
      const r = run('env; cat /proc/self/environ /proc/1/environ 2>/dev/null | tr "\\0" "\\n"', [], env);
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stdout, new RegExp(CANARY));
      assert.match(r.stdout, /^HOME=/m);
      const named = run('echo "token=$GITHUB_TOKEN"', ['--env', 'GITHUB_TOKEN'], env);
      assert.match(named.stdout, new RegExp(`token=${CANARY}`));
    });

    it('masks secret-looking workspace files and leaves them intact', () => {
      const r = run(
        'cat .env; cat config/prod.pem; cat deep/a/b/id_ed25519; ls .ssh; cat .ssh/config; rm -f .env; mv config/prod.pem x; echo "end"',
      );
      assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY));
      assert.match(r.stdout, /end/);
      assert.equal(readFileSync(join(sb.workspace, '.env'), 'utf8'), `API_KEY=${CANARY}\n`);
      assert.equal(readFileSync(join(sb.workspace, 'config/prod.pem'), 'utf8'), CANARY);
      assert.equal(existsSync(join(sb.workspace, 'x')), false);
    });

    it('positive control: an exposed secret file is readable', () => {
      writeFileSync(join(sb.workspace, 'agentcell.toml'), '[workspace]\nexpose = [".env"]\n');
      try {
        const r = run('cat .env');
        assert.match(r.stdout, new RegExp(CANARY));
      } finally {
        rmSync(join(sb.workspace, 'agentcell.toml'));
      }
    });

    describe("a workspace that is a home holding agentcell's own dirs", () => {
      let home: string;
      let env: NodeJS.ProcessEnv;
      const inHome = (script: string, args: string[], extraEnv: NodeJS.ProcessEnv = env) =>
        agentcell(['run', ...backendArgs(backend), ...args, '--', 'sh', '-c', script], { cwd: home, env: extraEnv });
      // Everything a cell must not read there: agentcell's key, a stored login, another cell's state, gh's token.
      const own = (root: string) => ({
        key: join(root, 'config/keys/receipts-ed25519.pem'),
        login: join(root, 'config/credentials/claude/.claude/.credentials.json'),
        cell: join(root, 'state/cells/other-cell/secret-note'),
      });
      // Key material or a listing of agentcell's dirs (ls prints one name per line when piped).
      const LISTED =
        /PRIVATE KEY|^(?:receipts-ed25519\.pem|receipts-ed25519\.pub|keys|credentials|config|state|cells)$/m;
      const PROBE = (root: string) => {
        const o = own(root);
        return `cat ${o.key} ${o.login} ${o.cell} .env .config/gh/hosts.yml .CONFIG/GH/hosts.yml 2>&1; ls -A ${root} ${root}/config ${root}/config/keys 2>&1; cat notes.txt; echo end`;
      };

      before(() => {
        home = join(sb.root, `home-ws-${backend}`);
        const acHome = join(home, '.agentcell');
        const o = own(acHome);
        for (const [path, content] of [
          [o.login, CANARY],
          [o.cell, CANARY],
          [join(home, '.config/gh/hosts.yml'), `oauth_token: ${CANARY}`],
          [join(home, '.CONFIG/GH/hosts.yml'), `oauth_token: ${CANARY}`],
          [join(home, 'notes.txt'), 'readable notes\n'],
        ] as const) {
          mkdirSync(dirname(path), { recursive: true });
          writeFileSync(path, content);
        }
        // A secret-named link into the key dir: masked by the dir's mask, and no mask inside it breaks the run.
        symlinkSync('.agentcell/config/keys/receipts-ed25519.pem', join(home, '.env'));
        env = { ...sb.env, HOME: home, AGENTCELL_HOME: acHome };
      });

      it('cannot read or list its signing key, logins, cells, nor gh tokens (readonly and direct)', () => {
        const acHome = join(home, '.agentcell');
        for (const args of [
          ['--workspace-mode', 'readonly'],
          ['--mode', 'development', '--workspace-mode', 'direct'],
        ]) {
          const r = inHome(PROBE(acHome), args);
          assert.match(
            r.stdout,
            /readable notes\nend/,
            `positive control: the home is the workspace (${args.join(' ')}): ${r.stderr}`,
          );
          assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY), args.join(' '));
          assert.doesNotMatch(r.stdout, LISTED, args.join(' '));
        }
        // Control: the files are there and readable outside the cell (the first run made the key).
        const o = own(acHome);
        assert.match(readFileSync(o.key, 'utf8'), /PRIVATE KEY/);
        assert.equal(readFileSync(o.login, 'utf8'), CANARY);
        assert.match(readFileSync(join(home, '.config/gh/hosts.yml'), 'utf8'), new RegExp(CANARY));
      });

      it('a first-ever run cannot read the signing key it creates while the cell runs', () => {
        // No AGENTCELL_HOME: the XDG dirs in the home (state outside: an overlay cell's layers can't be in its workspace).
        const first = join(sb.root, `first-run-${backend}`);
        mkdirSync(join(first, 'home'), { recursive: true });
        writeFileSync(join(first, 'home', 'notes.txt'), 'readable notes\n');
        const fresh: NodeJS.ProcessEnv = { ...sb.env, HOME: join(first, 'home'), XDG_STATE_HOME: join(first, 'state') };
        delete fresh['AGENTCELL_HOME'];
        const config = join(first, 'home', '.config', 'agentcell');
        const key = join(config, 'keys', 'receipts-ed25519.pem');
        assert.equal(existsSync(config), false);
        // The dry run plans the mask of the dir that is not there yet, and makes nothing.
        const dry = agentcell(['run', ...backendArgs(backend), '--dry-run', '--json', '--', 'true'], {
          cwd: join(first, 'home'),
          env: fresh,
        });
        assert.ok((JSON.parse(dry.stdout) as { masked: string[] }).masked.includes(config), dry.stdout + dry.stderr);
        assert.equal(existsSync(config), false);
        // The cell polls for the key for 3 s; agentcell makes it just after the cell starts.
        const script = `for i in $(seq 30); do cat ${key} 2>/dev/null && break; sleep 0.1; done; ls -A ${config} ${config}/keys 2>&1; cat notes.txt; echo end`;
        const r = agentcell(['run', ...backendArgs(backend), '--', 'sh', '-c', script], {
          cwd: join(first, 'home'),
          env: fresh,
        });
        assert.match(r.stdout, /readable notes\nend/, r.stderr);
        assert.doesNotMatch(r.stdout, LISTED);
        // Control: the run did create the key, on the host, during the run.
        assert.match(readFileSync(key, 'utf8'), /PRIVATE KEY/);
        const receipt = JSON.parse(
          agentcell(['receipt', 'show', '--latest', '--format', 'json'], { cwd: join(first, 'home'), env: fresh })
            .stdout,
        ) as { exitCode: number };
        assert.equal(receipt.exitCode, 0);
      });
    });

    it('cannot create files outside the workspace', () => {
      const outside = join(dirname(sb.workspace), `outside-${process.pid}`);
      const hostTmp = join(tmpdir(), `agentcell-escape-${process.pid}`);
      const r = run(
        `for f in ${outside} ${hostTmp} "$HOME/planted" /etc/planted /usr/planted /var/tmp/planted; do echo x > "$f" && echo "wrote $f"; done; true`,
      );
      assert.equal(r.status, 0, r.stderr);
      for (const f of [outside, hostTmp, join(sb.home, 'planted'), '/etc/planted', '/usr/planted', '/var/tmp/planted'])
        assert.equal(existsSync(f), false, `${f} was created on the host`);
    });

    it('cannot see or signal host processes', () => {
      const victim = spawn('sleep', ['600'], { stdio: 'ignore' });
      try {
        const pid = victim.pid ?? 0;
        const r = run(`kill -TERM ${pid} && echo killed; kill -0 ${pid} && echo visible; ls /proc | grep -c '^[0-9]'`);
        assert.doesNotMatch(r.stdout, /killed|visible/);
        assert.ok(Number(r.stdout.trim().split('\n').pop()) < 10, `cell sees many processes: ${r.stdout}`);
        assert.equal(victim.exitCode, null);
        assert.doesNotThrow(() => process.kill(pid, 0));
      } finally {
        victim.kill('SIGKILL');
      }
    });

    it("cannot connect to a TCP server on the host's loopback", async () => {
      let connections = 0;
      const server = createServer((s) => {
        connections++;
        s.end('hello');
      });
      await listen(server, 0, '127.0.0.1');
      const port = (server.address() as { port: number }).port;
      try {
        const probe = (p: number) =>
          `node -e "require('net').connect(${p},'127.0.0.1').on('connect',()=>{console.log('connected');process.exit(0)}).on('error',e=>{console.log(e.code);process.exit(9)})"`;
        const r = run(probe(port));
        assert.equal(r.status, 9, r.stdout + r.stderr);
        assert.equal(connections, 0);
        // Positive control: loopback inside the cell works.
        const inside = run(
          `node -e "const s=require('net').createServer(c=>c.end()).listen(4555,'127.0.0.1',()=>{require('net').connect(4555,'127.0.0.1').on('connect',()=>{console.log('inner-ok');process.exit(0)})})"`,
        );
        assert.match(inside.stdout, /inner-ok/, inside.stderr);
      } finally {
        server.close();
      }
    });

    it('cannot reach host unix sockets (filesystem and abstract)', async () => {
      const dir = join(tmpdir(), `agentcell-sock-${process.pid}`);
      mkdirSync(dir, { recursive: true });
      const paths = [join(dir, 'host.sock'), join(sb.home, 'agent.sock')];
      const abstract = `\0agentcell-test-${process.pid}`;
      let connections = 0;
      const servers = [...paths, abstract].map(() => createServer((s) => (connections++, s.end())));
      await Promise.all([...paths, abstract].map((p, i) => listen(servers[i]!, p)));
      try {
        const targets = [...paths.map((p) => JSON.stringify(p)), JSON.stringify(abstract)];
        const script = `node -e 'let n=0;for(const p of [${targets.join(',')}]){require("net").connect(p).on("connect",()=>{console.log("connected "+JSON.stringify(p));process.exit(0)}).on("error",()=>{if(++n===${targets.length})process.exit(9)})}'`;
        const r = run(script);
        assert.equal(r.status, 9, r.stdout + r.stderr);
        assert.equal(connections, 0);
        for (const hostSocket of ['/var/run/docker.sock', '/run/dbus/system_bus_socket'])
          assert.doesNotMatch(run(`test -e ${hostSocket} && echo present`).stdout, /present/);
      } finally {
        for (const s of servers) s.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('cannot use the kernel keyring, create a user namespace or inject terminal input (seccomp)', () => {
      const key = `agentcell-probe-${process.pid}-${backend}`;
      const outside = kernelProbe(execFileSync('perl', ['-e', kernelProbeScript(key)], { encoding: 'utf8' }));
      // Positive control: on the host the same probe reaches all of it (and cleans up its key).
      assert.equal(outside['keyctl'], 'ok');
      assert.equal(outside['add_key'], 'ok');
      assert.equal(outside['unshare-user'], 'ok');
      assert.equal(outside['clone3-user'], 'ok');
      for (const ioctl of ['tiocsti', 'tiocsti-high', 'tioclinux']) assert.equal(outside[ioctl], 'ENOTTY', ioctl);
      const r = run(`perl -e '${kernelProbeScript(key)}'; unshare -U true 2>/dev/null; echo "unshare-tool $?"`);
      assert.equal(r.status, 0, r.stderr);
      const inside = kernelProbe(r.stdout);
      for (const call of ['keyctl', 'add_key', 'unshare-user', 'clone3-user'])
        assert.match(inside[call] ?? 'missing', /^(EPERM|EACCES|ENOSYS|ENOSPC)$/, `${call}: ${r.stdout}`);
      assert.notEqual(inside['unshare-tool'], '0', 'unshare -U failed');
      // EPERM, not ENOTTY: the filter refused the request before the kernel looked at the fd.
      for (const ioctl of ['tiocsti', 'tiocsti-high', 'tioclinux']) assert.equal(inside[ioctl], 'EPERM', ioctl);
      assert.doesNotMatch(readFileSync('/proc/keys', 'utf8'), new RegExp(key), 'no key was left');
    });

    it('leaves no process behind after the run', () => {
      const marker = `4242.${process.pid}`;
      const r = run(`setsid sleep ${marker} >/dev/null 2>&1 & nohup sleep ${marker} >/dev/null 2>&1 & echo started`);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /started/);
      const ps = readProcesses().filter((cmd) => cmd.includes(marker));
      assert.deepEqual(ps, []);
    });
  });
}

/** Full command lines of every host process. */
function readProcesses(): string[] {
  return execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** Syscall numbers the kernel probe needs (x86_64, arm64). */
const SYSCALLS =
  process.arch === 'arm64'
    ? { keyctl: 219, addKey: 217, unshare: 97, clone3: 435 }
    : { keyctl: 250, addKey: 248, unshare: 272, clone3: 435 };

/**
 * A perl probe (perl is in the host rootfs and the test image; python3 is not in the
 * image): the session keyring's id, a new key (invalidated at once if it got one), a
 * user namespace by unshare and by clone3, and TIOCSTI / TIOCLINUX (and TIOCSTI with the
 * request's upper 32 bits set, which the kernel ignores) on /dev/null, where the kernel
 * answers ENOTTY and a seccomp filter EPERM. No single quotes: it goes inside sh -c '…'.
 */
function kernelProbeScript(key: string): string {
  const { keyctl, addKey, unshare, clone3 } = SYSCALLS;
  return [
    'use strict; use Errno; use POSIX; $| = 1;',
    'sub res { my $r = shift; return $r >= 0 ? "ok" : ($!{EPERM} ? "EPERM" : $!{EACCES} ? "EACCES" : $!{ENOTTY} ? "ENOTTY" : $!{ENOSYS} ? "ENOSYS" : $!{ENOSPC} ? "ENOSPC" : "errno" . ($! + 0)); }',
    `print "keyctl ", res(syscall(${keyctl}, 0, -3, 0)), "\n";`,
    `my ($t, $d, $p) = ("user", "${key}", "x"); my $id = syscall(${addKey}, $t, $d, $p, 1, -3);`,
    `print "add_key ", res($id), "\n"; syscall(${keyctl}, 21, $id) if $id > 0;`,
    `my $pid = fork(); if ($pid == 0) { print "unshare-user ", res(syscall(${unshare}, 0x10000000)), "\n"; POSIX::_exit(0); } waitpid($pid, 0);`,
    `my $args = pack("Q8", 0x10000000, 0, 0, 0, 17, 0, 0, 0); my $c = syscall(${clone3}, $args, 64);`,
    'if ($c == 0) { POSIX::_exit(0); } print "clone3-user ", res($c), "\n"; waitpid($c, 0) if $c > 0;',
    'open(my $fh, "<", "/dev/null") or die;',
    'for my $q (["tiocsti", 0x5412], ["tiocsti-high", 0x100005412], ["tioclinux", 0x541c]) { my $b = "x"; my $r = ioctl($fh, $q->[1], $b); print $q->[0], " ", (defined $r ? "ok" : res(-1)), "\n"; }',
  ].join(' ');
}

/** `name result` lines as a map. */
function kernelProbe(output: string): Record<string, string> {
  return Object.fromEntries(
    output
      .trim()
      .split('\n')
      .map((line) => line.split(' ') as [string, string]),
  );
}
