import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ac, cellDirOf, makeSandbox, type Sandbox } from './helpers.js';

/**
 * Verified restores (src/workspace/overlay/layer-hash.ts): a checkpoint records its
 * layer's content; a restore or fork that keeps the layer checks it first, and a layer
 * changed behind agentcell's back stops it, naming the layer, with nothing changed.
 */
describe('verified restores', () => {
  let sb: Sandbox;
  before(() => {
    sb = makeSandbox({ 'README.md': 'hello\n' });
    for (const script of ['echo one > one.txt', 'echo two > two.txt', 'echo three > three.txt'])
      assert.equal(ac(sb, 'run', '--', 'sh', '-c', script).status, 0);
  });
  after(() => sb.cleanup());

  const layers = (): { id: string; seq: number; contentHash?: string }[] =>
    (
      JSON.parse(readFileSync(join(cellDirOf(sb), 'layers.json'), 'utf8')) as {
        layers: { id: string; seq: number; contentHash?: string }[];
      }
    ).layers;

  it('each checkpoint records its layer’s content hash', () => {
    const recorded = layers();
    assert.equal(recorded.length, 3);
    for (const l of recorded) assert.match(l.contentHash ?? '', /^sha256:[0-9a-f]{64}$/);
  });

  it('positive control: an untouched layer restores', () => {
    const [, second] = layers();
    const r = ac(sb, 'restore', '--to', second!.id);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(layers().length, 2);
  });

  it('a frozen layer tampered with: restore and fork stop, naming the layer, and change nothing', () => {
    const [first] = layers();
    const dir = join(cellDirOf(sb), 'layers', `${String(first!.seq).padStart(4, '0')}-${first!.id}`);
    assert.deepEqual(readdirSync(dir), ['one.txt']);
    writeFileSync(join(dir, 'one.txt'), 'planted\n');
    const before = readFileSync(join(cellDirOf(sb), 'layers.json'), 'utf8');
    for (const args of [
      ['restore', '--to', first!.id],
      ['fork', 'forked'],
    ]) {
      const r = ac(sb, ...args, '--json');
      assert.equal(r.status, 3, `${args.join(' ')}: ${r.stderr}`);
      const error = (JSON.parse(r.stderr || r.stdout) as { error: { code: string; message: string } }).error;
      assert.equal(error.code, 'LAYER_TAMPERED');
      assert.match(error.message, new RegExp(`layer ${String(first!.seq).padStart(4, '0')}-${first!.id}`));
      assert.equal(readFileSync(join(cellDirOf(sb), 'layers.json'), 'utf8'), before, 'nothing changed');
    }
    // Restoring below the tampered layer (dropping it) is the way out, and works.
    assert.equal(ac(sb, 'restore').status, 0);
  });

  it('a settled layer is checked by its entries’ inodes and change times: an edit keeping size and mtime is caught', async () => {
    const local = makeSandbox({ 'README.md': 'hello\n' });
    try {
      for (const script of ['echo one > one.txt', 'echo two > two.txt'])
        assert.equal(ac(local, 'run', '--', 'sh', '-c', script).status, 0);
      const recorded = (): { id: string; seq: number; statHash?: string }[] =>
        (
          JSON.parse(readFileSync(join(cellDirOf(local), 'layers.json'), 'utf8')) as {
            layers: { id: string; seq: number; statHash?: string }[];
          }
        ).layers;
      // Frozen right after their writes: no stat hash yet. Once settled, a check reads the content and records one.
      await new Promise((resolve) => setTimeout(resolve, 2_800));
      const [first, second] = recorded();
      assert.equal(ac(local, 'restore', '--to', second!.id).status, 0);
      assert.match(recorded()[1]?.statHash ?? '', /^sha256:/, 'recorded by the check');
      // Same size, mtime put back (ns): only the ctime and the content tell.
      const file = join(cellDirOf(local), 'layers', `${String(first!.seq).padStart(4, '0')}-${first!.id}`, 'one.txt');
      const mtime = statSync(file, { bigint: true }).mtimeNs;
      execFileSync('sh', [
        '-c',
        `touch -r "$1" "$1.ref" && printf 'onX\n' > "$1" && touch -r "$1.ref" "$1" && rm "$1.ref"`,
        'sh',
        file,
      ]);
      assert.equal(statSync(file, { bigint: true }).mtimeNs, mtime);
      const r = ac(local, 'restore', '--to', second!.id, '--json');
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr || r.stdout, /LAYER_TAMPERED/);
    } finally {
      local.cleanup();
    }
  });
});
