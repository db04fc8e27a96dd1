import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ac, acJson, cellDirOf, inCell, listTree, makeSandbox, startCli, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS, TEST_IMAGE, TEST_ROOTFS } from './backends-under-test.js';

/**
 * What the OCI backends add to the shared isolation and egress suites: the engine
 * invocation itself (hardening flags, no secret values in argv), the overlay workspace
 * mounted on the host for the engine (diff / restore / accept as on bwrap, no mount left
 * behind), the image digest in receipts, limits, and `image build|list|rm`.
 */
const OCI = TEST_BACKENDS.filter((b) => b !== 'bwrap');
/** The test rootfs is root's (debootstrap), so only root can tar it up. */
const ROOTFS_UNREADABLE = process.getuid?.() !== 0 && 'the test rootfs belongs to root';

interface Receipt {
  backend: { name: string; version: string };
  image?: { ref: string; digest: string };
  changes: { added: number; modified: number; deleted: number };
}

interface OciPlan {
  argv: string[];
  hostMount?: string[];
  image: { digest: string };
  dockerApi?: {
    create: {
      Env: string[];
      Image: string;
      HostConfig: Record<string, unknown> & { CapDrop: string[]; SecurityOpt: string[]; Runtime?: string };
    };
  };
}

function engineOf(backend: string): string {
  return backend === 'podman' ? 'podman' : 'docker';
}

/** Rootless podman's cells mount in podman's user namespace: look there. */
const ROOTLESS = process.getuid?.() !== 0;

function isMountPoint(path: string, backend?: string): boolean {
  const mountinfo =
    backend === 'podman' && ROOTLESS
      ? spawnSync('podman', ['unshare', 'cat', '/proc/self/mountinfo'], { encoding: 'utf8' }).stdout
      : readFileSync('/proc/self/mountinfo', 'utf8');
  return mountinfo.split('\n').some((line) => line.split(' ')[4] === path);
}

for (const backend of OCI) {
  describe(`OCI backend: ${backend}`, () => {
    let sb: Sandbox;
    const run = (script: string, args: string[] = []) => inCell(sb, script, [...backendArgs(backend), ...args]);

    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({ 'README.md': 'hello\n', 'src/app.js': 'v1\n', 'old.txt': 'old\n', '.git/config': '[core]\n' });
    });
    after(() => sb.cleanup());

    it('--dry-run prints a hardened engine invocation, with no variable values in it, and writes nothing', () => {
      const before = listTree(sb.root);
      const plan = acJson<{ plan: OciPlan }>(
        sb,
        'run',
        ...backendArgs(backend),
        '--dry-run',
        '--json',
        '--env',
        'SECRET_VALUE=hunter2-in-argv?',
        '--',
        'true',
      );
      assert.doesNotMatch(JSON.stringify(plan), /hunter2/);
      const api = plan.plan.dockerApi;
      if (backend === 'podman' || !api) {
        const argv = plan.plan.argv.join(' ');
        for (const flag of [
          '--network none',
          '--cap-drop ALL',
          '--security-opt no-new-privileges',
          '--read-only',
          '--pull never',
          '--rm',
        ])
          assert.ok(argv.includes(flag), `missing ${flag} in ${argv}`);
        if (backend === 'gvisor') assert.ok(argv.includes('--runtime runsc'), argv);
        assert.match(argv, /--security-opt seccomp=\S+\/seccomp-[0-9a-f]{16}\.json/, "agentcell's seccomp profile");
        assert.ok(plan.plan.argv.includes('SECRET_VALUE'), 'the variable is passed by name');
        assert.ok(plan.plan.argv.includes(plan.plan.image.digest), 'the run is pinned to the digest');
      } else {
        // docker on its local socket: the same container as API requests (what `docker run` sends).
        assert.deepEqual(plan.plan.argv, [], 'no CLI runs');
        const host = api.create.HostConfig;
        assert.equal(host.NetworkMode, 'none');
        assert.deepEqual(host.CapDrop, ['ALL']);
        const [noNewPrivileges, seccomp, ...more] = host.SecurityOpt;
        assert.equal(noNewPrivileges, 'no-new-privileges');
        assert.deepEqual(more, []);
        const profile = JSON.parse(seccomp?.replace(/^seccomp=/, '') ?? '') as { syscalls: { names: string[] }[] };
        const named = profile.syscalls.flatMap((rule) => rule.names);
        for (const name of ['keyctl', 'ioctl', 'unshare', 'clone']) assert.ok(named.includes(name), name);
        assert.equal(host.ReadonlyRootfs, true);
        assert.equal(host.AutoRemove, true);
        assert.equal(host.Runtime, backend === 'gvisor' ? 'runsc' : undefined);
        assert.ok(api.create.Env.includes('SECRET_VALUE'), 'the variable is passed by name');
        assert.equal(api.create.Image, plan.plan.image.digest, 'the run is pinned to the digest');
      }
      assert.match(plan.plan.hostMount?.join(' ') ?? '', /-t overlay overlay/);
      assert.deepEqual(listTree(sb.root), before);
    });

    it('/tmp and $HOME are writable and executable scratch, as on bwrap; the image is read-only', () => {
      const script = 'printf "#!/bin/sh\\necho ran\\n" > "$1/x" && chmod +x "$1/x" && "$1/x"';
      const r = run(`sh -c '${script}' - /tmp && sh -c '${script}' - "$HOME"; touch /usr/x 2>/dev/null || echo ro`);
      assert.equal(r.stdout, 'ran\nran\nro\n', r.stderr);
    });

    it('a missing image fails with the command that builds it', () => {
      const r = ac(sb, 'run', '--backend', backend, '--image', 'localhost/agentcell/none:missing', '--', 'true');
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr, /agentcell image build --from/);
    });

    it('overlay workspace: the host is untouched until accept; diff and restore as on bwrap; no mount is left', () => {
      const r = run('echo v2 > src/app.js && rm old.txt && echo new > new.txt && cat README.md');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'hello\n');
      assert.equal(readFileSync(join(sb.workspace, 'src/app.js'), 'utf8'), 'v1\n');
      assert.ok(existsSync(join(sb.workspace, 'old.txt')));
      assert.ok(!existsSync(join(sb.workspace, 'new.txt')));
      assert.ok(!isMountPoint(join(cellDirOf(sb), 'merged'), backend), 'the host overlay mount is gone after the run');
      const diff = acJson<{ path: string; change: string }[]>(sb, 'diff', '--json');
      assert.deepEqual(diff.map((d) => `${d.change} ${d.path}`).sort(), [
        'added new.txt',
        'deleted old.txt',
        'modified src/app.js',
      ]);
      // A second run sees the first one's changes (the stack is mounted as lowers).
      const second = run('cat src/app.js; test -e old.txt || echo gone');
      assert.equal(second.stdout, 'v2\ngone\n', second.stderr);

      assert.equal(ac(sb, 'restore').status, 0);
      assert.deepEqual(acJson<unknown[]>(sb, 'diff', '--json'), []);
      const again = run('echo v3 > src/app.js');
      assert.equal(again.status, 0, again.stderr);
      const accepted = ac(sb, 'accept');
      assert.equal(accepted.status, 0, accepted.stderr);
      assert.equal(readFileSync(join(sb.workspace, 'src/app.js'), 'utf8'), 'v3\n');
      assert.ok(existsSync(join(sb.workspace, 'old.txt')), 'the restored deletion stayed restored');
    });

    it('control-plane files are read-only in the cell; other workspace files are writable', () => {
      const r = run('echo "[alias] x = !evil" >> .git/config; echo "rc=$?"; echo ok > other.txt && cat other.txt');
      assert.match(r.stdout, /rc=[1-9]/);
      assert.match(r.stdout, /^ok$/m);
      assert.equal(readFileSync(join(sb.workspace, '.git/config'), 'utf8'), '[core]\n');
      assert.doesNotMatch(run('cat .git/config').stdout, /evil/);
    });

    it('records the backend and the image digest the engine reports in the receipt', () => {
      const r = run('true');
      assert.equal(r.status, 0, r.stderr);
      const receipt = acJson<Receipt>(sb, 'receipt', 'show', '--format', 'json');
      const id = spawnSync(engineOf(backend), ['image', 'inspect', '--format', '{{.Id}}', TEST_IMAGE], {
        encoding: 'utf8',
      }).stdout.trim();
      assert.equal(receipt.backend.name, backend);
      assert.match(receipt.backend.version, /^\d|^0\.0~/);
      assert.equal(receipt.image?.ref, TEST_IMAGE);
      assert.equal(receipt.image?.digest.replace(/^sha256:/, ''), id.replace(/^sha256:/, ''));
      assert.equal(acJson<{ ok: boolean }>(sb, 'receipt', 'verify', '--json').ok, true);
    });

    it('a memory-limit kill is said by agentcell and in the receipt, not just exit 137 (control: a run under the limit says nothing)', () => {
      writeFileSync(join(sb.workspace, 'agentcell.toml'), '[resources]\nmemory = "64M"\n');
      let killed;
      let receipt;
      let under;
      try {
        killed = run('head -c 300000000 /dev/zero | tail > /dev/null', ['--workspace-mode', 'readonly']);
        // Rootless podman without delegated cgroups enforces no limit, and says so.
        if (/resources\.memory not enforced/.test(killed.stderr)) {
          assert.match(killed.stderr, /assurance reduced/);
          return;
        }
        assert.equal(killed.status, 137, killed.stderr);
        receipt = acJson<{ limit?: unknown }>(sb, 'receipt', 'show', '--format', 'json');
        under = run('head -c 1000000 /dev/zero | tail > /dev/null; echo fine', ['--workspace-mode', 'readonly']);
      } finally {
        writeFileSync(join(sb.workspace, 'agentcell.toml'), '');
      }
      assert.match(killed.stderr, /agentcell: the run hit the memory limit \(64 MiB, \[resources\] memory\)/);
      assert.deepEqual(receipt.limit, {
        hit: 'memory',
        detail: 'the run hit the memory limit (64 MiB, [resources] memory)',
      });
      assert.equal(under.status, 0, under.stderr);
      assert.equal(under.stdout, 'fine\n');
      assert.doesNotMatch(under.stderr, /memory limit/);
      const cell = basename(cellDirOf(sb));
      const left = spawnSync(
        engineOf(backend),
        ['ps', '-a', '--filter', `label=io.agentcell.cell=${cell}`, '--format', '{{.Names}}'],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(left.stdout.trim(), '', 'no container of the cell is left behind');
    });

    it('enforces [resources] pids: a process flood stops at the limit (positive control: without it, it does not)', () => {
      // gVisor's sandbox threads count too, so the limit leaves it room to start. Each sleep
      // outlives the loop by far (120 forks under gVisor on a loaded 2-core machine took > 5 s).
      const flood =
        'for i in $(seq 1 120); do sleep 120 2>/dev/null & done; sleep 0.5; echo "alive=$(echo /proc/[0-9]* | wc -w)"; kill $(jobs -p) 2>/dev/null; true';
      writeFileSync(join(sb.workspace, 'agentcell.toml'), '[resources]\npids = 60\n');
      let limited;
      try {
        limited = run(flood, ['--workspace-mode', 'readonly']);
      } finally {
        writeFileSync(join(sb.workspace, 'agentcell.toml'), '');
      }
      const free = run(flood, ['--workspace-mode', 'readonly']);
      const alive = (out: string): number => Number(/alive=(\d+)/.exec(out)?.[1] ?? 0);
      // Past the limit the flood stops, or even the shell cannot fork to count; where the
      // engine cannot enforce it (rootless podman without delegated cgroups), the run says so.
      if (/resources\.pids not enforced/.test(limited.stderr)) assert.match(limited.stderr, /assurance reduced/);
      else assert.ok(alive(limited.stdout) <= 60, `limited: ${limited.stdout} ${limited.stderr}`);
      assert.ok(alive(free.stdout) > 110, `free: ${free.stdout} ${free.stderr}`);
    });

    it("[resources] pids counts the cell's processes, not the sandbox's: a gateway cell (node bridge) starts under pids = 100", () => {
      writeFileSync(join(sb.workspace, 'agentcell.toml'), '[resources]\npids = 100\n');
      try {
        const r = run('echo started', [
          '--workspace-mode',
          'readonly',
          '--network',
          'allowlist',
          '--allow',
          'example.com',
        ]);
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout, 'started\n');
      } finally {
        writeFileSync(join(sb.workspace, 'agentcell.toml'), '');
      }
    });

    it('runs the image a ref names now: moving the ref to another image is never answered from a stale digest', () => {
      const engine = engineOf(backend);
      const ref = `localhost/agentcell/moved-${backend}:${process.pid}`;
      const idOf = (image: string): string =>
        spawnSync(engine, ['image', 'inspect', '--format', '{{.Id}}', image], { encoding: 'utf8' })
          .stdout.trim()
          .replace(/^sha256:/, '');
      const digestRun = (): string | undefined => {
        const r = run('true', ['--image', ref, '--workspace-mode', 'readonly']);
        assert.equal(r.status, 0, r.stderr);
        return acJson<Receipt>(sb, 'receipt', 'show', '--format', 'json').image?.digest.replace(/^sha256:/, '');
      };
      try {
        assert.equal(spawnSync(engine, ['tag', TEST_IMAGE, ref]).status, 0);
        assert.equal(digestRun(), idOf(TEST_IMAGE));
        assert.equal(digestRun(), idOf(TEST_IMAGE), 'a second run, from the cache where there is one');
        const file = join(sb.root, `Containerfile.${backend}`);
        writeFileSync(file, `FROM ${TEST_IMAGE}\nLABEL agentcell.moved=${process.pid}\n`);
        const built = ac(sb, 'image', 'build', '--from', file, '--engine', engine, '--tag', ref);
        assert.equal(built.status, 0, built.stderr);
        assert.notEqual(idOf(ref), idOf(TEST_IMAGE));
        assert.equal(digestRun(), idOf(ref), 'the run follows the ref to its new image');
      } finally {
        spawnSync(engine, ['rmi', '--force', ref], { stdio: 'ignore' });
      }
    });

    it('a SIGKILLed agentcell’s container is removed by its watchdog; the mount it left, by the next run', async () => {
      const merged = join(cellDirOf(sb), 'merged');
      const engine = engineOf(backend);
      // Longer than the wait below: the container must be removed, not merely finish.
      const child = startCli(['run', ...backendArgs(backend), '--', 'sleep', '300'], {
        cwd: sb.workspace,
        env: sb.env,
      });
      const containers = (): string[] =>
        spawnSync(engine, ['ps', '-a', '--format', '{{.Names}}'], { encoding: 'utf8' })
          .stdout.split('\n')
          .filter((n) => n.endsWith(`-${String(child.pid)}`));
      const waitFor = async (what: string, ok: () => boolean, ms: number): Promise<void> => {
        for (const end = Date.now() + ms; !ok(); await new Promise((r) => setTimeout(r, 100)))
          if (Date.now() > end) throw new Error(`timed out waiting: ${what}`);
      };
      try {
        await waitFor('the cell', () => isMountPoint(merged, backend) && containers().length > 0, 30_000);
        child.kill('SIGKILL');
        // 'exit', not 'close': the engine's client still holds agentcell's stdout until the container ends.
        await new Promise((r) => child.once('exit', r));
        // The engine, not agentcell, runs the container: without the watchdog it would sleep on (invariant 7).
        await waitFor('the watchdog to remove the container', () => containers().length === 0, 20_000);
        // The mount is never dropped under a container the engine may still be starting.
        assert.ok(isMountPoint(merged, backend), 'the mount stays until the next run');
      } finally {
        child.kill('SIGKILL');
        for (const name of containers()) spawnSync(engine, ['rm', '--force', name], { stdio: 'ignore' });
      }
      const next = run('cat README.md');
      assert.equal(next.stdout, 'hello\n', next.stderr);
      assert.ok(!isMountPoint(merged, backend), 'the next run dropped the old mount and left none');
    });
  });
}

for (const engine of [...new Set(OCI.map(engineOf))]) {
  describe(`agentcell image build|list|rm on ${engine}`, () => {
    let sb: Sandbox;
    const tag = `localhost/agentcell/image-test:${process.pid}`;
    before(() => {
      prepareBackend(engine === 'podman' ? 'podman' : 'docker');
      sb = makeSandbox();
      mkdirSync(sb.workspace, { recursive: true });
    });
    after(() => {
      for (const t of [tag, `${tag}-file`]) spawnSync(engine, ['rmi', '--force', t], { stdio: 'ignore' });
      sb.cleanup();
    });

    it('builds from a Containerfile and records the digest', () => {
      const file = join(sb.root, 'Containerfile');
      writeFileSync(file, `FROM ${TEST_IMAGE}\nLABEL agentcell.test=${process.pid}\n`);
      const built = acJson<{ image: { digest: string } }>(
        sb,
        ...['image', 'build', '--from', file, '--engine', engine, '--tag', `${tag}-file`, '--json'],
      );
      const id = spawnSync(engine, ['image', 'inspect', '--format', '{{.Id}}', `${tag}-file`], {
        encoding: 'utf8',
      }).stdout.trim();
      assert.equal(built.image.digest.replace(/^sha256:/, ''), id.replace(/^sha256:/, ''));
      assert.equal(ac(sb, 'image', 'rm', `${tag}-file`).status, 0);
    });

    it('imports a rootfs dir, records its digest, lists it, removes it', { skip: ROOTFS_UNREADABLE }, () => {
      const dry = ac(sb, 'image', 'build', '--from', TEST_ROOTFS, '--engine', engine, '--tag', tag, '--dry-run');
      assert.equal(dry.status, 0, dry.stderr);
      assert.match(dry.stdout, new RegExp(`${engine} import - ${tag}`));
      assert.notEqual(spawnSync(engine, ['image', 'inspect', tag], { stdio: 'ignore' }).status, 0, 'dry run built');

      const build = ac(sb, ...['image', 'build', '--from', TEST_ROOTFS, '--engine', engine, '--tag', tag, '--json']);
      assert.equal(build.status, 0, build.stderr);
      const built = JSON.parse(build.stdout) as { image: { digest: string; tag: string } };
      // Progress on stderr while it works: the step, then the time taken and the bytes sent.
      assert.match(build.stderr, new RegExp(`agentcell: importing the rootfs ${TEST_ROOTFS} into ${engine} as ${tag}`));
      assert.match(
        build.stderr,
        new RegExp(`agentcell: built ${tag} in \\d+\\.\\d s, \\d+\\.\\d MiB sent to the engine`),
      );
      const id = spawnSync(engine, ['image', 'inspect', '--format', '{{.Id}}', tag], {
        encoding: 'utf8',
      }).stdout.trim();
      assert.equal(built.image.digest.replace(/^sha256:/, ''), id.replace(/^sha256:/, ''));
      const listed = acJson<{ tag: string; present: boolean; digest: string }[]>(sb, 'image', 'list', '--json');
      assert.deepEqual(
        listed.map((i) => [i.tag, i.present, i.digest]),
        [[tag, true, built.image.digest]],
      );
      const ran = inCell(sb, 'node -e "console.log(1+1)"', ['--backend', engine, '--image', tag]);
      assert.equal(ran.stdout, '2\n', ran.stderr);

      const dryRm = acJson<{ dryRun: boolean; commands: string[][] }>(
        sb,
        ...['image', 'rm', tag, '--engine', engine, '--dry-run', '--json'],
      );
      assert.deepEqual(dryRm.commands, [[engine, 'rmi', '--force', tag]]);
      assert.equal(spawnSync(engine, ['image', 'inspect', tag], { stdio: 'ignore' }).status, 0, 'dry run removed');
      assert.equal(acJson<unknown[]>(sb, 'image', 'list', '--json').length, 1, 'dry run dropped the record');
      assert.equal(ac(sb, 'image', 'rm', tag, '--engine', engine).status, 0);
      assert.notEqual(spawnSync(engine, ['image', 'inspect', tag], { stdio: 'ignore' }).status, 0, 'still there');
      assert.deepEqual(acJson<unknown[]>(sb, 'image', 'list', '--json'), []);
      assert.equal(ac(sb, 'image', 'rm', tag).status, 2, 'removing an unknown image is a usage error');
    });
  });
}
