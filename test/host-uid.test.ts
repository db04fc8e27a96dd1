import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CELL_MAPS_TO_HOST_ROOT } from '../src/backends/host-uid.js';
import { acJson, agentcell, makeSandbox, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS, type TestBackend } from './backends-under-test.js';

/**
 * The cell's uid on the host (DESIGN.md invariant 10: never the host's uid 0, even when
 * agentcell runs as root), attacked from inside bwrap cells as the default user and as
 * --root. bwrap maps the cell's uid onto its caller's, so a root caller's cell is still
 * host uid 0 (without capabilities): until it runs under an unprivileged host uid
 * (docs/security.md, "sec-userns"), every such run must carry the label, and the tests
 * hold the two together: a cell that maps to host uid 0 is labeled, a labeled one does.
 * An ordinary caller's cell never maps to host uid 0 and its writes are refused by the
 * kernel's permission check (DAC), not by read-only mounts alone.
 */

const CALLER = process.getuid?.() ?? 1000;
const AS = [
  { name: 'the default user', args: [] as string[] },
  { name: '--root', args: ['--mode', 'development', '--root'] },
];

/** Whether a uid_map (`inside outside count` per line) maps any id onto host uid 0. */
function mapsHostRoot(uidMap: string): boolean {
  return uidMap
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number))
    .some(([, outside, count]) => outside !== undefined && count !== undefined && outside === 0 && count > 0);
}

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

it('the probe sees a mapping onto host uid 0 where there is one', () => {
  // Control: this test process lives in the host's user namespace, which maps 0 onto 0.
  assert.equal(mapsHostRoot(readFileSync('/proc/self/uid_map', 'utf8')), true);
  assert.equal(mapsHostRoot('         0     100000      65536\n'), false);
  assert.equal(mapsHostRoot('      1000       1001          1\n'), false);
});

for (const backend of TEST_BACKENDS) {
  describe(`the cell's host uid on ${backend}`, () => {
    let sb: Sandbox;
    before(() => {
      prepareBackend(backend);
      sb = makeSandbox({ 'README.md': 'hello\n' });
    });
    after(() => sb.cleanup());

    for (const as of AS) {
      it(`as ${as.name}: the cell's uid_map maps onto host uid 0 only with the label, in the run and its receipt`, () => {
        const run = runJson(sb, 'cat /proc/self/uid_map', as.args, backend);
        const hostRoot = mapsHostRoot(run.stdout);
        const labeled = run.reasons.includes(CELL_MAPS_TO_HOST_ROOT);
        assert.equal(labeled, hostRoot, `uid_map ${run.stdout.trim()}; reasons ${run.reasons.join('; ')}`);
        // Where bwrap stands today: only a root caller's cell is host uid 0.
        if (backend === 'bwrap') assert.equal(hostRoot, CALLER === 0, run.stdout);
        const receipt = acJson<{ assurance: { reasons: string[] } }>(sb, 'receipt', 'show', '--format', 'json');
        assert.equal(receipt.assurance.reasons.includes(CELL_MAPS_TO_HOST_ROOT), hostRoot);
      });
    }
  });
}

describe('writes from a bwrap cell on the host', () => {
  let sb: Sandbox;
  before(() => {
    sb = makeSandbox({ 'README.md': 'hello\n' });
  });
  after(() => sb.cleanup());

  it('root-owned files in a rw [[mount]] are refused by DAC unless the run is labeled; new files get the caller’s uid', () => {
    // As root the probe gets a root-owned copy to attack (the cell may write it today: the
    // labeled limit); unprivileged, a root-owned system directory the caller can't change.
    const scratch = mkdtempSync(join(tmpdir(), 'agentcell-hostuid-'));
    const rootOwned = CALLER === 0 ? scratch : '/usr/share/doc/bubblewrap';
    if (CALLER === 0) {
      chmodSync(scratch, 0o755);
      writeFileSync(join(scratch, 'copyright'), 'root-owned\n', { mode: 0o644 });
    }
    const owned = mkdtempSync(join(tmpdir(), 'agentcell-hostuid-own-'));
    const policy = join(sb.root, 'host-uid.toml');
    writeFileSync(
      policy,
      `[[mount]]\nsource = "${rootOwned}"\ntarget = "/mnt/root-owned"\nmode = "rw"\n\n` +
        `[[mount]]\nsource = "${owned}"\ntarget = "/mnt/own"\nmode = "rw"\n`,
    );
    // `: >>` opens for writing and writes nothing: the host file is unchanged even where it works.
    const probe = [
      '(: >> /mnt/root-owned/copyright) 2>/dev/null && echo FILE-WRITABLE',
      '(mkdir /mnt/root-owned/made-in-cell) 2>/dev/null && echo DIR-WRITABLE',
      'touch /mnt/own/made-in-cell && echo made',
    ].join('; ');
    const before = statSync(join(rootOwned, 'copyright'));
    const entries = readdirSync(rootOwned).sort();
    try {
      assert.equal(before.uid, 0, `${rootOwned}/copyright belongs to root`);
      // Control: the same probe outside a cell, as the caller: root writes root's files.
      const outside = spawnSync(
        'sh',
        ['-c', probe.replace(/\/mnt\/root-owned/g, rootOwned).replace(/\/mnt\/own/g, owned)],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(/FILE-WRITABLE/.test(outside.stdout), CALLER === 0, outside.stdout);
      rmSync(join(rootOwned, 'made-in-cell'), { recursive: true, force: true });
      rmSync(join(owned, 'made-in-cell'), { force: true });
      for (const as of AS) {
        const run = runJson(sb, probe, ['--mode', 'development', '--policy', policy, ...as.args]);
        const labeled = run.reasons.includes(CELL_MAPS_TO_HOST_ROOT);
        const wrote = /FILE-WRITABLE|DIR-WRITABLE/.test(run.stdout);
        assert.equal(wrote, labeled, `${as.name}: ${run.stdout}; reasons ${run.reasons.join('; ')}`);
        assert.match(run.stdout, /made\n/);
        const made = statSync(join(owned, 'made-in-cell'));
        // The cell's new file is the caller's on the host: uid 0 only for a labeled (root-caller) run.
        assert.equal(made.uid, CALLER, as.name);
        assert.equal(made.uid === 0, labeled, as.name);
        rmSync(join(owned, 'made-in-cell'));
        if (CALLER === 0) rmSync(join(rootOwned, 'made-in-cell'), { recursive: true, force: true });
      }
      // No host side effect: the root-owned file and directory are as they were.
      const now = statSync(join(rootOwned, 'copyright'));
      assert.equal(now.size, before.size);
      assert.equal(now.mtimeMs, before.mtimeMs);
      assert.deepEqual(readdirSync(rootOwned).sort(), entries);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
      rmSync(owned, { recursive: true, force: true });
    }
  });
});
