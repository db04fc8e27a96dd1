import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ac, acJson, cellDirOf, makeSandbox, snapshot, type Sandbox } from './helpers.js';

/**
 * The fallbacks through the CLI: a cell whose layers are kept by fuse-overlayfs or by
 * the copy driver (forced with AGENTCELL_OVERLAY_DRIVER, as the probe picks them where
 * the kernel refuses) gives the same transaction: the host untouched until accept, the
 * same diff, accept and restore, and the fallback labeled in the banner and the receipt.
 */
const LABEL = { 'fuse-overlayfs': /fuse-overlayfs/, copy: /copy driver/ } as const;

for (const driver of ['fuse-overlayfs', 'copy'] as const)
  describe(`overlay workspace through ${driver}`, () => {
    let sb: Sandbox;
    let pristine: Map<string, string>;

    before(() => {
      sb = makeSandbox({ 'keep.txt': 'keep\n', 'edit.txt': 'old\n', 'drop/a': 'a\n', 'drop/b': 'b\n' });
      sb.env['AGENTCELL_OVERLAY_DRIVER'] = driver;
      pristine = snapshot(sb.workspace);
    });
    after(() => sb.cleanup());

    it('a run writes only to the cell; diff reads its whiteouts and opaque dirs', () => {
      const r = ac(
        sb,
        'run',
        '--',
        '/bin/sh',
        '-c',
        'set -e; echo new > edit.txt; echo n > added.txt; rm keep.txt; rm -rf drop; mkdir drop; echo c > drop/c',
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, LABEL[driver], 'the banner names the fallback');
      assert.deepEqual(snapshot(sb.workspace), pristine, 'the host workspace is untouched');
      const layers = JSON.parse(readFileSync(join(cellDirOf(sb), 'layers.json'), 'utf8')) as { driver: string };
      assert.equal(layers.driver, driver, 'the cell records its driver');
      const diff = acJson<{ path: string; change: string }[]>(sb, 'diff', '--json');
      assert.deepEqual(diff.map((c) => `${c.change} ${c.path}`).sort(), [
        'added added.txt',
        'added drop/c',
        'deleted drop/a',
        'deleted drop/b',
        'deleted keep.txt',
        'modified edit.txt',
      ]);
      const receipt = acJson<{ assurance: { reasons: string[] } }>(
        sb,
        'receipt',
        'show',
        '--latest',
        '--format',
        'json',
      );
      assert.ok(
        receipt.assurance.reasons.some((reason) => LABEL[driver].test(reason)),
        JSON.stringify(receipt.assurance),
      );
    });

    it('the next run sees the frozen layer, and the cell keeps its driver without the variable', () => {
      delete sb.env['AGENTCELL_OVERLAY_DRIVER'];
      const r = ac(
        sb,
        'run',
        '--',
        '/bin/sh',
        '-c',
        'cat edit.txt added.txt drop/c; test ! -e keep.txt; test ! -e drop/a',
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'new\nn\nc\n');
      assert.match(r.stderr, LABEL[driver]);
    });

    it('accept applies the changes to the host, and no marker', () => {
      const accepted = ac(sb, 'accept');
      assert.equal(accepted.status, 0, accepted.stderr);
      assert.equal(readFileSync(join(sb.workspace, 'edit.txt'), 'utf8'), 'new\n');
      assert.equal(readFileSync(join(sb.workspace, 'drop', 'c'), 'utf8'), 'c\n');
      assert.equal(existsSync(join(sb.workspace, 'keep.txt')), false);
      assert.equal(existsSync(join(sb.workspace, 'drop', 'a')), false);
      assert.equal(existsSync(join(sb.workspace, '.wh..wh..opq')), false, 'no fuse-overlayfs marker reaches the host');
      assert.equal(existsSync(join(sb.workspace, 'drop', '.wh..wh..opq')), false);
      assert.deepEqual(acJson(sb, 'diff', '--json'), []);
    });

    it('a file the cell names like a marker is never read as one', () => {
      const r = ac(sb, 'run', '--', '/bin/sh', '-c', 'echo x > .wh.edit.txt; echo x > .wh..wh..opq; echo done');
      assert.equal(r.stdout, 'done\n');
      // fuse-overlayfs refuses such names to the cell; the copy driver's layers use the
      // kernel's format, where they are ordinary files.
      const expected = driver === 'copy' ? ['added .wh..wh..opq', 'added .wh.edit.txt'] : [];
      const diff = acJson<{ path: string; change: string }[]>(sb, 'diff', '--json');
      assert.deepEqual(diff.map((c) => `${c.change} ${c.path}`).sort(), expected);
      assert.equal(readFileSync(join(sb.workspace, 'edit.txt'), 'utf8'), 'new\n');
      const rerun = ac(sb, 'run', '--', '/bin/sh', '-c', 'cat edit.txt');
      assert.equal(rerun.stdout, 'new\n', 'edit.txt is still there in the cell');
      if (driver === 'copy') assert.equal(ac(sb, 'restore').status, 0);
    });

    it('an unknown driver name is a usage error that names the variable', () => {
      const fresh = makeSandbox({ 'a.txt': 'a\n' });
      try {
        fresh.env['AGENTCELL_OVERLAY_DRIVER'] = 'zfs';
        const r = ac(fresh, 'run', '--', 'true');
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /AGENTCELL_OVERLAY_DRIVER=zfs: expected "kernel", "fuse-overlayfs", "copy" or "auto"/);
        assert.equal(existsSync(join(fresh.agentcellHome, 'state', 'cells')), false, 'nothing was created');
      } finally {
        fresh.cleanup();
      }
    });
  });
