import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { agentcellInstallDir } from '../src/_internal/install-dir.js';
import { agentcell, makeSandbox, type CliResult, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, prepareTestRootfs, TEST_BACKENDS } from './backends-under-test.js';

/**
 * Red-team class 13: a cell learns nothing of the host's layout of agentcell itself: not
 * the state dir or config dir (AGENTCELL_HOME here: layers, egress socket, CA, ssh key),
 * not the install path (the bridge script, node_modules), not the caller's home or the
 * caller's cwd when it is not the workspace. The probe reads every channel a process in
 * the cell has: /proc/1/cmdline (bwrap's pid 1), every /proc/PID/{cmdline,environ,cwd,
 * exe,root,fd/*}, /proc/self/mountinfo (bind sources show as the mount's root, overlay
 * layers in its options), /proc/mounts, /proc/self/cgroup, its environment, and the
 * files agentcell puts in the cell. The cell is a gateway cell with TLS inspection (the
 * bridge, the socket, the CA files bound in), the cell's ssh key, and an overlay workspace
 * with a frozen layer. By design the cell sees the workspace at its host path and its
 * home at the caller's home path (an empty tmpfs): `HOME=` and mount targets in that home
 * are dropped before the search (their sources are not: the cell's ssh key is bound there).
 */

const PROBE = [
  'echo @@cmdline1; tr "\\0" " " </proc/1/cmdline; echo',
  'echo @@procs',
  'for p in /proc/[0-9]*; do',
  '  tr "\\0" " " <"$p/cmdline"; echo; tr "\\0" "\\n" <"$p/environ"',
  '  for l in "$p/cwd" "$p/exe" "$p/root" "$p"/fd/*; do readlink "$l"; done',
  'done 2>/dev/null',
  'echo @@mountinfo; cat /proc/self/mountinfo',
  'echo @@mounts; cat /proc/mounts',
  'echo @@cgroup; cat /proc/self/cgroup',
  'echo @@env; env',
  'echo @@files',
  'for f in /run/agentcell/* /etc/ssh/ssh_config "$HOME"/.ssh/*; do',
  '  [ -f "$f" ] && [ "$(wc -c <"$f")" -lt 1000000 ] && cat "$f"',
  'done 2>/dev/null',
  'echo @@end',
].join('\n');

type Section = 'cmdline1' | 'procs' | 'mountinfo' | 'mounts' | 'cgroup' | 'env' | 'files';

/** The probe's output by section, without what the cell sees by design (its HOME variable and mounts in its home). */
function sections(stdout: string, home: string): Map<Section, string[]> {
  const out = new Map<Section, string[]>();
  let current: Section | undefined;
  for (const line of stdout.split('\n')) {
    const marker = /^@@(\w+)$/.exec(line);
    if (marker) {
      current = marker[1] === 'end' ? undefined : (marker[1] as Section);
      if (current) out.set(current, []);
      continue;
    }
    if (!current) continue;
    const fields = line.split(' ');
    const inHome = (path: string | undefined): boolean => path === home || !!path?.startsWith(`${home}/`);
    if (line === `HOME=${home}`) continue;
    if (current === 'mountinfo' && inHome(fields[4])) continue;
    if (current === 'mounts' && inHome(fields[1])) continue;
    out.get(current)?.push(line);
  }
  return out;
}

function leaks(found: Map<Section, string[]>, needles: Record<string, string>): string[] {
  const lines: string[] = [];
  for (const [what, needle] of Object.entries(needles))
    for (const [section, text] of found)
      for (const line of text) if (line.includes(needle)) lines.push(`${what} in ${section}: ${line}`);
  return lines;
}

for (const backend of TEST_BACKENDS) {
  describe(`host paths stay out of the cell on ${backend}`, () => {
    let sb: Sandbox;
    let callerCwd: string;
    let controlDir: string;
    const installDir = agentcellInstallDir();

    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({ 'README.md': 'hello\n' });
      callerCwd = join(sb.root, 'caller-cwd');
      controlDir = join(sb.root, 'control-needle');
      for (const dir of [callerCwd, controlDir]) mkdirSync(dir);
      writeFileSync(join(controlDir, 'marker'), 'control\n');
      // As root, a pids limit too: bwrap then starts through the cgroup wrapper (a shell that exports PWD).
      writePolicy(sb, process.getuid?.() === 0 ? ['[resources]', 'pids = 512'] : []);
      // The cell's own ssh key, bound in from the state dir.
      const key = agentcell(['pubkey'], { cwd: sb.workspace, env: sb.env });
      assert.equal(key.status, 0, key.stderr);
      // A frozen layer under the run's upper: the overlay then stacks layers from the state dir.
      const first = runIn(sb.workspace, ['--', 'sh', '-c', 'echo one > layered.txt']);
      assert.equal(first.status, 0, first.stderr);
      const checkpoint = agentcell(['checkpoint'], { cwd: sb.workspace, env: sb.env });
      assert.equal(checkpoint.status, 0, checkpoint.stderr);
    });
    after(() => sb.cleanup());

    function writePolicy(sandbox: Sandbox, extra: string[]): void {
      writeFileSync(
        join(sandbox.workspace, 'agentcell.toml'),
        [
          '[network]',
          'mode = "allowlist"',
          'allow = ["example.test"]',
          'inspect = ["example.test"]',
          ...extra,
          '',
        ].join('\n'),
      );
    }

    /** `agentcell run` on this backend from `cwd`, for the sandbox's workspace. */
    function runIn(cwd: string, args: string[], sandbox: Sandbox = sb): CliResult {
      return agentcell(['run', ...backendArgs(backend), '--workspace', sandbox.workspace, ...args], {
        cwd,
        env: sandbox.env,
      });
    }

    function probe(sandbox: Sandbox, args: string[] = [], cwd = callerCwd): Map<Section, string[]> {
      const r = runIn(cwd, [...args, '--', 'sh', '-c', PROBE]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /@@end/, 'the probe ran to its end');
      const found = sections(r.stdout, sandbox.home);
      // The probe reads what it claims to: the workspace (visible by design) shows in each mount table.
      for (const table of ['mountinfo', 'mounts'] as const)
        assert.ok(
          found.get(table)?.some((l) => l.includes(` ${sandbox.workspace} `)),
          `${table}: ${found.get(table)?.join('\n')}`,
        );
      assert.ok(
        found.get('files')?.some((l) => l.includes('BEGIN CERTIFICATE')),
        'the CA files were read',
      );
      return found;
    }

    it('no state dir, config dir, install path, caller home or caller cwd in any channel', () => {
      const found = probe(sb);
      const needles: Record<string, string> = {
        'AGENTCELL_HOME (state and config dir)': sb.agentcellHome,
        "the caller's home": sb.home,
        "the caller's cwd": callerCwd,
        ...(installDir ? { 'the install dir': installDir } : {}),
      };
      assert.deepEqual(leaks(found, needles), []);
      // bwrap's own path and its options' fd; the options themselves came through the pipe.
      if (backend === 'bwrap') assert.match(found.get('cmdline1')?.join('') ?? '', /^\/\S*\/bwrap --args \d+ -- /);
      // Each bound file is there, from a neutral source: copies and the socket on /dev/shm.
      const binds = found.get('mountinfo')?.filter((l) => l.includes(' /run/agentcell/')) ?? [];
      assert.ok(
        binds.some((l) => l.includes(' /run/agentcell/egress.sock ')),
        binds.join('\n'),
      );
      assert.ok(
        binds.some((l) => l.includes(' /run/agentcell/ca.crt ')),
        binds.join('\n'),
      );
    });

    it('positive control: the same probe finds a host path bound, passed in the environment and in argv', () => {
      const control = makeSandbox({ 'README.md': 'hello\n' });
      try {
        writePolicy(control, ['[[mount]]', `source = ${JSON.stringify(controlDir)}`, 'mode = "ro"']);
        const r = runIn(
          callerCwd,
          ['--env', `NEEDLE=${controlDir}`, '--', 'sh', '-c', PROBE, 'probe', controlDir],
          control,
        );
        assert.equal(r.status, 0, r.stderr);
        const found = sections(r.stdout, control.home);
        for (const section of ['procs', 'mountinfo', 'mounts', 'env'] as const)
          assert.ok(
            found.get(section)?.some((l) => l.includes(controlDir)),
            `${section} shows ${controlDir}: ${found.get(section)?.join('\n')}`,
          );
        // And the plan (what --dry-run prints) keeps the full invocation, host paths and all.
        const dry = agentcell(['run', ...backendArgs(backend), '--dry-run', '--json', '--', 'true'], {
          cwd: sb.workspace,
          env: sb.env,
        });
        assert.equal(dry.status, 0, dry.stderr);
        assert.ok(dry.stdout.includes(sb.agentcellHome), dry.stdout);
      } finally {
        control.cleanup();
      }
    });

    it("a [[mount]] of the host's /dev/shm shows no egress socket or staged copy of any cell", () => {
      const other = makeSandbox({ 'README.md': 'hello\n' });
      const control = `/dev/shm/host-paths-control-${process.pid}`;
      writeFileSync(control, 'control\n');
      try {
        writePolicy(other, ['[[mount]]', 'source = "/dev/shm"', 'target = "/hostshm"', 'mode = "ro"']);
        const key = agentcell(['pubkey'], { cwd: other.workspace, env: other.env });
        assert.equal(key.status, 0, key.stderr);
        // While this cell runs, its own socket and copies (ssh key included) are in /dev/shm/agentcell-UID.
        const script = 'ls /hostshm 2>&1; echo @@; find /hostshm/agentcell-* 2>&1; echo @@; cat /proc/self/mountinfo';
        const r = runIn(callerCwd, ['--', 'sh', '-c', script], other);
        assert.equal(r.status, 0, r.stderr);
        const [listing = '', inside = '', mounts = ''] = r.stdout.split('@@');
        assert.match(mounts, / \/hostshm ro/, 'the bind is in place');
        if (backend === 'gvisor')
          // runsc refuses to serve a directory of the host's /dev/shm at all (files in it, as the socket, work).
          assert.match(listing, /Invalid argument/, listing);
        else assert.match(listing, new RegExp(`host-paths-control-${process.pid}`), 'control: the bind shows /dev/shm');
        assert.doesNotMatch(inside, /egress\.sock|id_ed25519|ca\.crt|bridge|run-|egress-/, inside);
      } finally {
        rmSync(control, { force: true });
        other.cleanup();
      }
    });

    if (backend === 'bwrap') {
      const NOT_ROOT =
        process.getuid?.() !== 0 && 'the test rootfs belongs to root; an unprivileged user needs its own';
      for (const variant of [
        { name: 'a fuse-overlayfs workspace', rootfs: false, skip: false as const },
        {
          name: 'a directory rootfs with its own layer, over a fuse-overlayfs workspace',
          rootfs: true,
          skip: NOT_ROOT,
        },
      ])
        it(`bwrap: ${variant.name} names no host path`, { skip: variant.skip }, () => {
          const rootfs = variant.rootfs ? prepareTestRootfs() : undefined;
          const other = makeSandbox({ 'README.md': 'hello\n' });
          try {
            writePolicy(other, rootfs ? ['[cell]', `rootfs = ${JSON.stringify(rootfs)}`] : []);
            other.env['AGENTCELL_OVERLAY_DRIVER'] = 'fuse-overlayfs';
            const r = agentcell(
              ['run', '--backend', 'bwrap', '--workspace', other.workspace, '--', 'sh', '-c', PROBE],
              { cwd: callerCwd, env: other.env },
            );
            assert.equal(r.status, 0, r.stderr);
            const found = sections(r.stdout, other.home);
            const mounts = found.get('mountinfo') ?? [];
            assert.ok(
              mounts.some((l) => l.includes(' - fuse.fuse-overlayfs ')),
              mounts.join('\n'),
            );
            if (rootfs) {
              const root = mounts.find((l) => l.split(' ')[4] === '/') ?? '';
              assert.match(root, / - overlay overlay .*lowerdir=\/proc\/self\/fd\/9,upperdir=upper,workdir=work/);
            }
            const needles: Record<string, string> = {
              'AGENTCELL_HOME (state and config dir)': other.agentcellHome,
              "the caller's home": other.home,
              "the caller's cwd": callerCwd,
              ...(rootfs ? { 'the rootfs dir': rootfs } : {}),
              ...(installDir ? { 'the install dir': installDir } : {}),
            };
            assert.deepEqual(leaks(found, needles), []);
          } finally {
            other.cleanup();
          }
        });
    }
  });
}
