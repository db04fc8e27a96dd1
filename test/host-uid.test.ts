import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CELL_MAPS_TO_HOST_ROOT } from '../src/backends/host-uid.js';
import { rootRange } from '../src/backends/uid-shift.js';
import { ac, acJson, agentcell, cellDirOf, makeSandbox, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS, type TestBackend } from './backends-under-test.js';

/**
 * The cell's uid on the host (DESIGN.md invariant 10: never the host's uid 0, even when
 * agentcell runs as root), attacked from inside cells as the default user and as --root.
 * bwrap maps the cell's uid onto the uid that starts it: the caller's, or for a root caller
 * root's subordinate uid (uid-shift.ts, docs/security.md "sec-uid"). A root caller's OCI
 * cell binds the same idmapped stage (docs/security.md "oci-uid"): on rootful podman in a
 * user namespace on that range, on docker and gVisor as that uid itself; a --root cell there
 * (no per-container user namespace) is still host uid 0 without capabilities and must carry
 * the label. The tests hold the two together: a cell that is host uid 0 is labeled, a
 * labeled one is. The host's own view decides (the owner of a file the cell made): the
 * cell's /proc/self/uid_map shows only the map into bwrap's first-level namespace, whose
 * uid 0 is the caller, root or not.
 */

const CALLER = process.getuid?.() ?? 1000;
/** The first of root's subordinate range (bootstrap.sh adds it): a root caller's cells run as it. */
const SHIFTED_UID = rootRange('/etc/subuid')?.base ?? 0;

/**
 * The host uid a cell runs as: the caller's (an ordinary caller's cells, rootless podman's
 * in-cell root too), for a root caller root's subordinate uid, except a --root cell on docker
 * and gVisor (docker has no per-container user namespace: host uid 0, labeled).
 */
function cellHostUid(backend: TestBackend, root: boolean): number {
  if (CALLER !== 0) return CALLER;
  return root && (backend === 'docker' || backend === 'gvisor') ? 0 : SHIFTED_UID;
}
const AS = [
  { name: 'the default user', args: [] as string[] },
  { name: '--root', args: ['--mode', 'development', '--root'], root: true },
] as { name: string; args: string[]; root?: true }[];

interface Started {
  stdout: string;
  reasons: string[];
}

/** `run --json -- sh -c SCRIPT`: the command's stdout and the assurance reasons of its start event. */
function runJson(sb: Sandbox, script: string, args: string[], backend: TestBackend = 'bwrap'): Started {
  const r = agentcell(['run', '--json', ...backendArgs(backend), ...args, '--', 'sh', '-c', script], {
    cwd: sb.workspace,
    env: sb.env,
  });
  assert.equal(r.status, 0, r.stderr);
  const start = JSON.parse(r.stderr.trim().split('\n')[0] ?? '{}') as {
    event?: string;
    assurance?: { reasons: string[] };
  };
  assert.equal(start.event, 'start', r.stderr);
  return { stdout: r.stdout, reasons: start.assurance?.reasons ?? [] };
}

/** A policy binding each `[source, target]` read-write. */
function rwMounts(sb: Sandbox, name: string, mounts: [string, string][]): string {
  const policy = join(sb.root, `${name}.toml`);
  writeFileSync(
    policy,
    mounts.map(([source, target]) => `[[mount]]\nsource = "${source}"\ntarget = "${target}"\nmode = "rw"\n`).join('\n'),
  );
  return policy;
}

for (const backend of TEST_BACKENDS) {
  describe(`the cell's host uid on ${backend}`, () => {
    let sb: Sandbox;
    let shared: string;
    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({ 'README.md': 'hello\n' });
      shared = mkdtempSync(join(tmpdir(), 'agentcell-hostuid-own-'));
      chmodSync(shared, 0o777); // a cell of any uid may make its file here; the host then tells whose it is
    });
    after(() => {
      sb.cleanup();
      rmSync(shared, { recursive: true, force: true });
    });

    for (const as of AS) {
      it(`as ${as.name}: a file the cell makes is host uid 0's only in a run labeled so, there and in its receipt`, () => {
        const policy = rwMounts(sb, 'own', [[shared, '/mnt/own']]);
        const name = `made-${as.args.length}`;
        // Control: the host sees the caller's uid on a file the caller makes.
        const control = join(shared, 'control');
        writeFileSync(control, '');
        assert.equal(statSync(control).uid, CALLER);
        rmSync(control);
        const run = runJson(
          sb,
          `touch /mnt/own/${name} && echo made`,
          ['--mode', 'development', '--policy', policy, ...as.args],
          backend,
        );
        assert.equal(run.stdout, 'made\n');
        const owner = statSync(join(shared, name)).uid;
        rmSync(join(shared, name));
        const labeled = run.reasons.includes(CELL_MAPS_TO_HOST_ROOT);
        assert.equal(labeled, owner === 0, `host owner ${owner}; reasons ${run.reasons.join('; ')}`);
        const receipt = acJson<{ assurance: { reasons: string[] } }>(sb, 'receipt', 'show', '--format', 'json');
        assert.equal(receipt.assurance.reasons.includes(CELL_MAPS_TO_HOST_ROOT), owner === 0);
        // Where it stands: an ordinary caller's cell is never host uid 0 (rootless podman maps
        // in-cell root onto the caller too), nor is a root caller's (uid-shift.ts), but for a
        // --root cell on docker or gVisor.
        assert.equal(owner, cellHostUid(backend, as.root === true));
      });
    }
  });
}

describe('host uid 0 seen from inside a bwrap cell', () => {
  let sb: Sandbox;
  before(() => {
    sb = makeSandbox({ 'README.md': 'hello\n' });
  });
  after(() => sb.cleanup());

  // /usr is the host's own, root-owned: the cell sees it as the overflow uid unless host uid
  // 0 is mapped into its namespace, and as its own uid when the cell is host uid 0.
  const probe = 'echo "$(stat -c %u /usr) $(id -u) $(cat /proc/sys/kernel/overflowuid)"';

  it('the probe sees host uid 0 mapped where it is', () => {
    // Control: on the host, /usr's owner (0) is mapped, not the overflow uid.
    const [owner, , overflow] = spawnSync('sh', ['-c', probe], { encoding: 'utf8' }).stdout.trim().split(' ');
    assert.equal(owner, '0');
    assert.notEqual(owner, overflow);
  });

  for (const as of AS) {
    it(`as ${as.name}: host uid 0 is mapped into the cell only in a run labeled so`, () => {
      const run = runJson(sb, probe, as.args);
      const [owner, self, overflow] = run.stdout.trim().split(' ');
      const mapped = owner !== overflow;
      assert.equal(run.reasons.includes(CELL_MAPS_TO_HOST_ROOT), mapped, `${run.stdout}; ${run.reasons.join('; ')}`);
      // Mapped means the cell's own uid is host uid 0's: it owns root's files. Never on bwrap,
      // whoever runs agentcell (a root caller's cell is root's subordinate uid).
      if (mapped) assert.equal(owner, self);
      assert.equal(mapped, false);
    });
  }
});

for (const backend of TEST_BACKENDS)
  describe(`what host root could do, from a ${backend} cell (a root caller's too)`, () => {
    let sb: Sandbox;
    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({ 'README.md': 'hello\n' });
    });
    after(() => sb.cleanup());

    it('root-owned files in a rw [[mount]] are refused by DAC unless the run is labeled', () => {
      // As root the probe gets a root-owned copy to attack (a labeled cell, host uid 0, may
      // write it); unprivileged, a root-owned system directory the caller can't change.
      const scratch = mkdtempSync(join(tmpdir(), 'agentcell-hostuid-'));
      const rootOwned = CALLER === 0 ? scratch : '/usr/share/doc/bubblewrap';
      if (CALLER === 0) {
        chmodSync(scratch, 0o755);
        writeFileSync(join(scratch, 'copyright'), 'root-owned\n', { mode: 0o644 });
      }
      const policy = rwMounts(sb, 'root-owned', [[rootOwned, '/mnt/root-owned']]);
      // `: >>` opens for writing and writes nothing: the host file is unchanged even where it works.
      const probe = [
        '(: >> /mnt/root-owned/copyright) 2>/dev/null && echo FILE-WRITABLE',
        '(mkdir /mnt/root-owned/made-in-cell) 2>/dev/null && echo DIR-WRITABLE',
        'echo probed',
      ].join('; ');
      const before = statSync(join(rootOwned, 'copyright'));
      const entries = readdirSync(rootOwned).sort();
      try {
        assert.equal(before.uid, 0, `${rootOwned}/copyright belongs to root`);
        // Control: the same probe outside a cell, as the caller: root writes root's files.
        const outside = spawnSync('sh', ['-c', probe.replace(/\/mnt\/root-owned/g, rootOwned)], { encoding: 'utf8' });
        assert.equal(/FILE-WRITABLE\nDIR-WRITABLE/.test(outside.stdout), CALLER === 0, outside.stdout);
        rmSync(join(rootOwned, 'made-in-cell'), { recursive: true, force: true });
        for (const as of AS) {
          const run = runJson(sb, probe, ['--mode', 'development', '--policy', policy, ...as.args], backend);
          assert.match(run.stdout, /probed\n$/);
          const wrote = /FILE-WRITABLE|DIR-WRITABLE/.test(run.stdout);
          const labeled = run.reasons.includes(CELL_MAPS_TO_HOST_ROOT);
          assert.equal(wrote, labeled, `${as.name}: ${run.stdout}; reasons ${run.reasons.join('; ')}`);
          if (CALLER === 0) rmSync(join(rootOwned, 'made-in-cell'), { recursive: true, force: true });
        }
        // No host side effect: the root-owned file and directory are as they were.
        const now = statSync(join(rootOwned, 'copyright'));
        assert.equal(now.size, before.size);
        assert.equal(now.mtimeMs, before.mtimeMs);
        assert.equal(readFileSync(join(rootOwned, 'copyright')).length, before.size);
        assert.deepEqual(readdirSync(rootOwned).sort(), entries);
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    });

    it('a root-only host file bound in is neither read nor written, as the default user or --root', () => {
      // As root, a 0600 root file in a world-writable rw [[mount]] (host uid 0 would own it);
      // unprivileged, the host's /etc/shadow (root's, not the caller's) through a ro mount.
      const scratch = mkdtempSync(join(tmpdir(), 'agentcell-rootonly-'));
      chmodSync(scratch, 0o777);
      const dir = CALLER === 0 ? scratch : '/etc';
      const file = CALLER === 0 ? 'secret' : 'shadow';
      if (CALLER === 0) writeFileSync(join(scratch, file), 'root-only\n', { mode: 0o600 });
      const policy = join(sb.root, 'root-only.toml');
      writeFileSync(
        policy,
        `[[mount]]\nsource = "${dir}"\ntarget = "/mnt/r"\nmode = "${CALLER === 0 ? 'rw' : 'ro'}"\n`,
      );
      const probe = [
        `(head -c1 /mnt/r/${file} >/dev/null) 2>/dev/null && echo READ`,
        `(: >> /mnt/r/${file}) 2>/dev/null && echo WRITE`,
        `(chmod 666 /mnt/r/${file}) 2>/dev/null && echo CHMOD`,
        'echo probed',
      ].join('; ');
      try {
        const before = statSync(join(dir, file));
        assert.equal(before.uid, 0);
        // Control: as host root the same probe reads and writes it (unprivileged: the probe,
        // run by root through su is not available, so the file's mode shows it is root-only).
        if (CALLER === 0) {
          const outside = spawnSync('sh', ['-c', probe.replace(/\/mnt\/r/g, dir)], { encoding: 'utf8' });
          assert.match(outside.stdout, /READ\nWRITE\nCHMOD\n/);
          chmodSync(join(dir, file), 0o600);
        } else assert.equal(before.mode & 0o004, 0);
        for (const as of AS) {
          const run = runJson(sb, probe, ['--mode', 'development', '--policy', policy, ...as.args], backend);
          // Host uid 0 (a --root cell on docker or gVisor) owns it: labeled, and the probe shows it.
          const hostRoot = cellHostUid(backend, as.root === true) === 0;
          assert.equal(run.reasons.includes(CELL_MAPS_TO_HOST_ROOT), hostRoot, run.reasons.join('; '));
          assert.equal(run.stdout, hostRoot ? 'READ\nWRITE\nCHMOD\nprobed\n' : 'probed\n', `${as.name}: ${run.stdout}`);
          const now = statSync(join(dir, file));
          if (hostRoot) chmodSync(join(dir, file), 0o600);
          else assert.equal(now.mode, CALLER === 0 ? (before.mode & ~0o777) | 0o600 : before.mode);
          assert.equal(now.size, before.size);
          assert.equal(now.mtimeMs, before.mtimeMs);
        }
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    });

    it('kernel tunables and sysrq are not written from a cell, as the default user or --root', () => {
      const tunable = '/proc/sys/kernel/printk_ratelimit_burst';
      const value = readFileSync(tunable, 'utf8').trim();
      const probe = [
        `(echo ${Number(value) + 1} > ${tunable}) 2>/dev/null && echo SYSCTL`,
        "(printf ' ' > /proc/sysrq-trigger) 2>/dev/null && echo SYSRQ",
        'echo probed',
      ].join('; ');
      // Control: host root can write the tunable (the same value back: no change).
      if (CALLER === 0) {
        const outside = spawnSync('sh', ['-c', `echo ${value} > ${tunable} && echo SYSCTL`], { encoding: 'utf8' });
        assert.equal(outside.stdout, 'SYSCTL\n');
      }
      for (const as of AS) {
        const run = runJson(sb, probe, as.args, backend);
        assert.equal(run.stdout, 'probed\n', `${as.name}: ${run.stdout}`);
        assert.equal(readFileSync(tunable, 'utf8').trim(), value);
      }
    });

    for (const as of AS)
      it(`as ${as.name}: the caller's 0600 workspace file stays the cell's to edit, and what the cell makes lands as the caller's after accept`, () => {
        const ws = makeSandbox({ 'README.md': 'hello\n' });
        try {
          const own = join(ws.workspace, 'private.txt');
          writeFileSync(own, 'mine\n', { mode: 0o600 });
          // Control: the shifted cell's host uid, outside any cell, can neither read nor write
          // it: only the stage's idmap makes it the cell's (a probe that would see a leak).
          if (CALLER === 0 && cellHostUid(backend, as.root === true) !== 0) {
            const outside = spawnSync(
              'setpriv',
              ['--reuid', String(SHIFTED_UID), '--regid', String(SHIFTED_UID), '--clear-groups', 'sh', '-c'].concat(
                `(head -c1 ${own} >/dev/null) 2>/dev/null && echo READ; (: >> ${own}) 2>/dev/null && echo WRITE; echo probed`,
              ),
              { encoding: 'utf8' },
            );
            assert.equal(outside.stdout, 'probed\n', outside.stderr);
          }
          const run = runJson(
            ws,
            'echo edited >> private.txt && chmod 640 private.txt && mkdir -p made/sub && echo new > made/sub/new.txt && echo done',
            as.args,
            backend,
          );
          assert.equal(run.stdout, 'done\n');
          // The cell's layer holds them as the caller's (a root caller's: root's on disk, not the shifted uid).
          const layers = join(cellDirOf(ws), 'layers');
          const layer = readdirSync(layers).find((l) => existsSync(join(layers, l, 'made/sub/new.txt')));
          assert.ok(layer, `new.txt in a layer of ${layers}`);
          for (const path of ['made', 'made/sub', 'made/sub/new.txt', 'private.txt'])
            assert.equal(statSync(join(layers, layer, path)).uid, CALLER, `${path} in the layer`);
          const accepted = ac(ws, 'accept');
          assert.equal(accepted.status, 0, accepted.stderr);
          assert.equal(readFileSync(own, 'utf8'), 'mine\nedited\n');
          for (const path of ['made', 'made/sub', 'made/sub/new.txt', 'private.txt']) {
            const st = statSync(join(ws.workspace, path));
            assert.deepEqual([st.uid, st.gid], [CALLER, process.getgid?.() ?? CALLER], path);
          }
          assert.equal(statSync(own).mode & 0o777, 0o640);
        } finally {
          ws.cleanup();
        }
      });
  });
