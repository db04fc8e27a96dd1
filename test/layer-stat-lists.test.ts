import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { layerStatHash, statHashOfListed } from '../src/workspace/overlay/layer-hash.js';
import { checkpoint, openLayerStack, restore } from '../src/workspace/overlay/layer-stack.js';
import { readStatList, saveStatList } from '../src/workspace/overlay/layer-stat-lists.js';

/**
 * A kept layer's check over the entries listed when its stat hash was taken
 * (src/workspace/overlay/layer-stat-lists.ts): it reads no directory but the layer's top,
 * and must still see every change a walk sees, whatever list it is given.
 */
describe('stat lists: a kept layer checked without reading its directories', () => {
  const root = mkdtempSync(join(tmpdir(), 'agentcell-stat-lists-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  /** A scan this far ahead counts everything made now as settled. */
  const later = (): number => Date.now() + 60_000;
  let n = 0;
  const makeLayer = (): string => {
    const dir = join(root, `layer${n++}`);
    mkdirSync(join(dir, 'a', 'b'), { recursive: true });
    writeFileSync(join(dir, 'top.txt'), 'top\n');
    writeFileSync(join(dir, 'a', 'x.ts'), 'x\n');
    writeFileSync(join(dir, 'a', 'b', 'y.ts'), 'y\n');
    return dir;
  };
  const taken = (dir: string): { hash: string; entries: string[] } => {
    const entries: string[] = [];
    const hash = layerStatHash(dir, later(), entries);
    assert.ok(hash !== undefined);
    return { hash, entries };
  };

  it('gives the walk’s hash over an unchanged layer', () => {
    const dir = makeLayer();
    const { hash, entries } = taken(dir);
    assert.deepEqual(entries, ['a', 'a/b', 'a/b/y.ts', 'a/x.ts', 'top.txt']);
    assert.equal(statHashOfListed(dir, entries, later()), hash);
  });

  it('gives the walk’s hash over an empty layer, and sees an entry added to it', () => {
    const dir = join(root, `layer${n++}`);
    mkdirSync(dir);
    const { hash, entries } = taken(dir);
    assert.deepEqual(entries, []);
    assert.equal(statHashOfListed(dir, entries, later()), hash);
    // Saved and read back, an empty list is still empty (not one empty path).
    saveStatList(join(root, 'cell-empty'), hash, entries);
    assert.deepEqual(readStatList(join(root, 'cell-empty'), hash), []);
    // A hand-edited layers.json's stat hash names no path outside the lists' dir.
    saveStatList(join(root, 'cell-empty'), 'sha256:../../escaped', ['x']);
    assert.equal(existsSync(join(root, 'escaped')), false);
    writeFileSync(join(dir, 'planted'), 'p\n');
    assert.equal(statHashOfListed(dir, entries, later()), undefined);
  });

  const changes: [string, (dir: string) => void][] = [
    ['a file rewritten in place, same size', (dir) => writeFileSync(join(dir, 'a', 'b', 'y.ts'), 'Y\n')],
    ['an entry added two levels down', (dir) => writeFileSync(join(dir, 'a', 'b', 'planted.ts'), 'p\n')],
    ['an entry added at the top (no line of its own covers the top)', (dir) => writeFileSync(join(dir, 'hook'), 'p\n')],
    ['an entry removed', (dir) => unlinkSync(join(dir, 'a', 'x.ts'))],
    ['an entry renamed', (dir) => renameSync(join(dir, 'a', 'x.ts'), join(dir, 'a', 'z.ts'))],
    [
      'a directory replaced',
      (dir) => {
        renameSync(join(dir, 'a', 'b'), join(dir, 'old-b'));
        mkdirSync(join(dir, 'a', 'b'));
        writeFileSync(join(dir, 'a', 'b', 'y.ts'), 'y\n');
      },
    ],
  ];
  for (const [what, change] of changes)
    it(`differs after ${what}, as the walk does`, () => {
      const dir = makeLayer();
      const { hash, entries } = taken(dir);
      change(dir);
      assert.notEqual(statHashOfListed(dir, entries, later()), hash);
      assert.notEqual(layerStatHash(dir, later()), hash, 'positive control: the walk sees it too');
    });

  it('a restore saves the kept layer’s list and prunes others; a list that leaves out a tampered entry vouches for nothing', async () => {
    const cellDir = join(root, 'cell');
    const stack = openLayerStack(cellDir, 'kernel');
    mkdirSync(join(stack.upper, 'src'));
    writeFileSync(join(stack.upper, 'src', 'main.ts'), 'main\n');
    writeFileSync(join(stack.upper, 'notes.md'), 'notes\n');
    const { stack: frozen, layer } = checkpoint(stack, { policyHash: 'sha256:test' });
    // Frozen right after its writes: no stat hash, no list. Once settled, the check records both.
    assert.equal(layer.statHash, undefined);
    await new Promise((resolve) => setTimeout(resolve, 2_800));
    const lists = join(cellDir, 'stat-lists');
    mkdirSync(lists, { recursive: true });
    writeFileSync(join(lists, 'f'.repeat(64)), 'of a layer long gone');
    const { stack: kept } = restore(frozen, { to: layer.id });
    const statHash = kept.layers[0]?.statHash;
    assert.match(statHash ?? '', /^sha256:[0-9a-f]{64}$/);
    const hex = statHash!.slice('sha256:'.length);
    assert.deepEqual(readdirSync(lists), [hex], 'the kept layer’s list, and no other');
    const listed = readFileSync(join(lists, hex), 'utf8').split('\0');
    assert.deepEqual(listed, ['notes.md', 'src', 'src/main.ts']);
    assert.equal(statHashOfListed(layer.dir, listed), statHash, 'the saved list reproduces the hash');

    // Tampered, and the list rewritten to leave the tampered file out: the hash is
    // recomputed from the disk, so the restore still reads the content and stops.
    writeFileSync(join(layer.dir, 'src', 'main.ts'), 'MAIN\n');
    writeFileSync(join(lists, hex), ['notes.md', 'src'].join('\0'));
    assert.throws(
      () => restore(kept, { to: layer.id }),
      (error: Error & { code?: string }) => error.code === 'LAYER_TAMPERED',
    );
    assert.ok(existsSync(layer.dir), 'nothing dropped');
  });
});
