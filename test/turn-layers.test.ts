import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { layerContentHash, layerContentHashYielding } from '../src/workspace/overlay/layer-hash.js';
import { createTurnRecorder, type TurnRecord, type TurnStart } from '../src/workspace/overlay/turn-layers.js';

/**
 * The turn recorder on its own, over a plain directory standing in for a run's upper
 * layer: each copy is what the upper was at its turn, files unchanged since the previous
 * copy are hard links of it, and the recorded hash is the copy's own hash taken afresh
 * (the recorder reads each shared file's content once; the restore reads them all).
 */
describe('turn recorder', () => {
  const root = mkdtempSync(join(tmpdir(), 'agentcell-turns-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  const start = (n: number): TurnStart => ({
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    provider: 'anthropic',
    host: 'api.anthropic.com',
    path: '/v1/messages',
  });
  /** Each turn as [number, copy dir, why skipped]. */
  const dirsOf = (turns: TurnRecord[]): [number, string | undefined, string | undefined][] =>
    turns.map((t) => [t.turn, t.dir, t.skipped]);
  /** A path in a copy of run `run` under `cellDir`, the copy named by its turn's number. */
  const copyPath =
    (cellDir: string, run: string) =>
    (t: number, path: string): string =>
      join(cellDir, 'turns', run, String(t).padStart(4, '0'), path);

  it('copies what changed, links what did not, and records each copy’s fresh hash', async () => {
    const cellDir = join(root, 'cell');
    const upper = join(cellDir, 'upper');
    mkdirSync(join(upper, 'deep', 'er'), { recursive: true });
    for (let i = 0; i < 200; i++) writeFileSync(join(upper, 'deep', i % 2 ? 'er' : '', `f${i}.js`), `v1 ${i}\n`);
    const recorder = createTurnRecorder({ cellDir, upper, run: 'r-test' });

    await recorder.take(start(1));
    writeFileSync(join(upper, 'deep', 'f0.js'), 'v2 0, longer\n'); // changed
    writeFileSync(join(upper, 'new.txt'), 'new\n'); // added
    rmSync(join(upper, 'deep', 'er', 'f1.js')); // deleted
    await recorder.take(start(2));
    writeFileSync(join(upper, 'deep', 'f2.js'), 'v3 2\n');
    await recorder.take(start(3));
    const turns = await recorder.settle();

    assert.deepEqual(dirsOf(turns), [
      [1, '0001', undefined],
      [2, '0002', undefined],
      [3, '0003', undefined],
    ]);
    const copy = copyPath(cellDir, 'r-test');
    for (const t of turns) assert.equal(t.contentHash, layerContentHash(copy(t.turn, '')), `turn ${t.turn}'s hash`);
    // Each copy is its turn's state.
    assert.equal(readFileSync(copy(1, 'deep/f0.js'), 'utf8'), 'v1 0\n');
    assert.equal(readFileSync(copy(2, 'deep/f0.js'), 'utf8'), 'v2 0, longer\n');
    assert.equal(lstatSync(copy(1, 'deep/er/f1.js')).isFile(), true);
    assert.equal(lstatSync(copy(2, 'deep/er/f1.js'), { throwIfNoEntry: false }), undefined);
    assert.equal(lstatSync(copy(1, 'new.txt'), { throwIfNoEntry: false }), undefined);
    assert.equal(readFileSync(copy(3, 'deep/f2.js'), 'utf8'), 'v3 2\n');
    assert.equal(readFileSync(copy(2, 'deep/f2.js'), 'utf8'), 'v1 2\n');
    // Shared, not copied: an unchanged file is one inode in every copy; a changed one is not.
    assert.equal(lstatSync(copy(3, 'deep/er/f3.js')).ino, lstatSync(copy(1, 'deep/er/f3.js')).ino);
    assert.equal(lstatSync(copy(3, 'new.txt')).ino, lstatSync(copy(2, 'new.txt')).ino);
    assert.notEqual(lstatSync(copy(2, 'deep/f0.js')).ino, lstatSync(copy(1, 'deep/f0.js')).ino);
  });

  it('hashes a copy while the event loop runs: the answer is not held for the hash, and the hash is the same', async () => {
    const cellDir = join(root, 'cell-big');
    const upper = join(cellDir, 'upper');
    for (let d = 0; d < 6; d++) {
      mkdirSync(join(upper, `d${d}`, 'sub'), { recursive: true });
      for (let i = 0; i < 100; i++) writeFileSync(join(upper, `d${d}`, i % 3 ? 'sub' : '', `f${i}`), `${d} ${i}\n`);
    }
    symlinkSync('d0/f0', join(upper, 'link'));
    const recorder = createTurnRecorder({ cellDir, upper, run: 'r-big' });
    await recorder.take(start(1));
    let recorded = false;
    const settled = recorder.settle().then((turns) => ((recorded = true), turns));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(
      recorded,
      false,
      'the copy of ~600 entries is still being hashed a turn of the loop after the answer went',
    );
    const [turn] = await settled;
    const copy = join(cellDir, 'turns', 'r-big', '0001');
    assert.equal(turn?.contentHash, layerContentHash(copy), 'the recorded hash is the copy’s, taken afresh');
    assert.equal(await layerContentHashYielding(copy), layerContentHash(copy));
    assert.equal(
      await layerContentHashYielding(upper),
      layerContentHash(copy),
      'the copy hashes as the upper it copied',
    );
  });

  it('takes the next turn while the previous one is still linked and hashed: each copy is its turn’s state', async () => {
    const cellDir = join(root, 'cell-overlap');
    const upper = join(cellDir, 'upper');
    for (let d = 0; d < 4; d++) {
      mkdirSync(join(upper, `d${d}`), { recursive: true });
      for (let i = 0; i < 150; i++) writeFileSync(join(upper, `d${d}`, `f${i}`), `v1 ${d} ${i}\n`);
    }
    const recorder = createTurnRecorder({ cellDir, upper, run: 'r-overlap' });
    await recorder.take(start(1));
    writeFileSync(join(upper, 'd0', 'f0'), 'v2\n');
    await recorder.take(start(2));
    writeFileSync(join(upper, 'd1', 'f1'), 'v3\n');
    rmSync(join(upper, 'd2', 'f2'));
    await recorder.take(start(3));
    await recorder.take(start(4)); // nothing changed since turn 3: it shares turn 3's copy
    const turns = await recorder.settle();
    assert.deepEqual(dirsOf(turns), [
      [1, '0001', undefined],
      [2, '0002', undefined],
      [3, '0003', undefined],
      [4, '0003', undefined],
    ]);
    const copy = copyPath(cellDir, 'r-overlap');
    for (const t of turns)
      assert.equal(t.contentHash, layerContentHash(copy(Number(t.dir), '')), `turn ${t.turn}'s hash`);
    assert.equal(readFileSync(copy(1, 'd0/f0'), 'utf8'), 'v1 0 0\n');
    assert.equal(readFileSync(copy(2, 'd0/f0'), 'utf8'), 'v2\n');
    assert.equal(readFileSync(copy(3, 'd0/f0'), 'utf8'), 'v2\n');
    assert.equal(readFileSync(copy(2, 'd1/f1'), 'utf8'), 'v1 1 1\n');
    assert.equal(readFileSync(copy(3, 'd1/f1'), 'utf8'), 'v3\n');
    assert.equal(lstatSync(copy(2, 'd2/f2')).isFile(), true);
    assert.equal(lstatSync(copy(3, 'd2/f2'), { throwIfNoEntry: false }), undefined);
    // Linked from the copy each file was written to.
    assert.equal(lstatSync(copy(3, 'd3/f3')).ino, lstatSync(copy(1, 'd3/f3')).ino);
    assert.equal(lstatSync(copy(3, 'd0/f0')).ino, lstatSync(copy(2, 'd0/f0')).ino);
  });

  it('a copy whose links fail is skipped with why, and the next turn copies afresh', async () => {
    const cellDir = join(root, 'cell-broken');
    const upper = join(cellDir, 'upper');
    mkdirSync(join(upper, 'src'), { recursive: true });
    for (let i = 0; i < 10; i++) writeFileSync(join(upper, 'src', `f${i}`), `v1 ${i}\n`);
    const recorder = createTurnRecorder({ cellDir, upper, run: 'r-broken' });
    await recorder.take(start(1));
    await recorder.settle();
    rmSync(join(cellDir, 'turns', 'r-broken', '0001', 'src', 'f5')); // a file the next copy would link
    writeFileSync(join(upper, 'src', 'f0'), 'v2\n');
    await recorder.take(start(2));
    await recorder.settle(); // turn 2's links have failed before turn 3 starts
    writeFileSync(join(upper, 'src', 'f1'), 'v3\n');
    await recorder.take(start(3));
    const turns = await recorder.settle();
    assert.equal(turns[1]?.dir, undefined);
    assert.match(turns[1]?.skipped ?? '', /could not be copied: .*ENOENT/);
    assert.equal(turns[2]?.skipped, undefined, JSON.stringify(turns[2]));
    const third = join(cellDir, 'turns', 'r-broken', turns[2]?.dir ?? '');
    assert.equal(turns[2]?.contentHash, layerContentHash(third));
    assert.equal(readFileSync(join(third, 'src', 'f5'), 'utf8'), 'v1 5\n');
    assert.equal(readFileSync(join(third, 'src', 'f1'), 'utf8'), 'v3\n');
    assert.equal(lstatSync(join(cellDir, 'turns', 'r-broken', '0002'), { throwIfNoEntry: false }), undefined);
  });

  it('a turn whose copy can not even begin is listed, skipped with why, and the next keeps its number', async () => {
    const cellDir = join(root, 'cell-blocked');
    const upper = join(cellDir, 'upper');
    mkdirSync(upper, { recursive: true });
    writeFileSync(join(upper, 'a.txt'), 'a\n');
    writeFileSync(join(cellDir, 'turns'), 'not a directory\n'); // where the copies go
    const recorder = createTurnRecorder({ cellDir, upper, run: 'r-blocked' });
    await recorder.take(start(1));
    writeFileSync(join(upper, 'b.txt'), 'b\n');
    await recorder.take(start(2));
    const turns = await recorder.settle();
    assert.deepEqual(
      turns.map((t) => t.turn),
      [1, 2],
    );
    for (const t of turns) assert.match(t.skipped ?? '', /the copy failed: .*ENOTDIR/);
  });
});
