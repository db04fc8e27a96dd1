import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { FAST_WRITER_BYTES_PER_S, sampleDelayMs, startDiskWatch, walkDelayMs } from '../src/run/run-disk-watch.js';

/**
 * The disk watcher samples as often as the room left needs (an idle session far from its
 * bound wakes a few times a second, not 40), and still stops a writer at the bound.
 * test/disk-limit.test.ts drives it through real cells on every backend.
 */
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

describe('disk watch pacing', () => {
  it('samples every 25 ms near a bound, at most every 500 ms far from it', () => {
    assert.equal(sampleDelayMs(0), 25);
    assert.equal(sampleDelayMs(-5 * MIB), 25);
    assert.equal(sampleDelayMs(64 * MIB), 25);
    assert.equal(sampleDelayMs(8 * GIB), 500);
    // In between, a writer at the assumed rate uses up exactly the room before the next sample.
    const room = 1 * GIB;
    assert.equal(sampleDelayMs(room), (room / FAST_WRITER_BYTES_PER_S) * 1000);
  });

  it('walks at most every 2 s far from the bound, every 50 ms near it, never more often than its cost allows', () => {
    assert.equal(walkDelayMs(0, 8 * GIB), 2000);
    assert.equal(walkDelayMs(0, 10 * MIB), 50);
    assert.equal(walkDelayMs(0, 0), 50);
    // A walk that took 100 ms waits 50 times as long, up to 8 s, however little room is left.
    assert.equal(walkDelayMs(100, 10 * MIB), 5000);
    assert.equal(walkDelayMs(1000, 10 * MIB), 8000);
  });
});

describe('disk watch on a real directory', () => {
  const root = mkdtempSync(join(tmpdir(), 'agentcell-disk-watch-'));
  after(() => removeTrees([root]));

  /** A watch on a new layer dir under root (with `subdirs` made in it), and the hits it reports. */
  const watchLayer = async (name: string, limitBytes: number, subdirs = '') => {
    const layer = join(root, name);
    mkdirSync(join(layer, subdirs), { recursive: true });
    const hits: string[] = [];
    const watch = await startDiskWatch({ dir: root, limitBytes, confirmDir: layer, onHit: (d) => hits.push(d) });
    return { layer, hits, watch };
  };

  it('stops a writer that passes the limit in its own layer and says so', async () => {
    const { layer, hits, watch } = await watchLayer('upper', 8 * MIB);
    const chunk = Buffer.alloc(MIB, 1);
    for (let i = 0; i < 32 && hits.length === 0; i++) {
      writeFileSync(join(layer, `f${i}`), chunk);
      await sleep(30);
    }
    const detail = await watch.stop();
    assert.equal(hits.length, 1);
    assert.match(detail ?? '', /^the cell wrote \d+\.\d MiB, past \[resources\] disk = 8\.0 MiB$/);
  });

  it('the last check at stop walks nested directories: writes made since the last sample still count', async () => {
    const { layer, hits, watch } = await watchLayer('nested', 8 * MIB, 'a/b/c');
    // At once, no pause for a tick: the stop's own check has to find them. Three times the
    // limit, so that space other tests free meanwhile can't hide them from the statfs delta.
    const chunk = Buffer.alloc(2 * MIB, 2);
    for (let i = 0; i < 12; i++) writeFileSync(join(layer, 'a', i % 2 ? 'b' : 'b/c', `f${i}`), chunk);
    const detail = await watch.stop();
    assert.match(detail ?? '', /^the cell wrote 2\d\.\d MiB, past \[resources\] disk = 8\.0 MiB$/);
    assert.equal(hits.length, 1);
  });

  it('an idle layer far from its bound is not a hit, and stop answers at once', async () => {
    const { layer, hits, watch } = await watchLayer('idle', 8 * GIB);
    writeFileSync(join(layer, 'small'), 'x');
    await sleep(600);
    const started = Date.now();
    assert.equal(await watch.stop(), undefined);
    assert.ok(Date.now() - started < 400, 'stop waited for a sample that was not running');
    assert.deepEqual(hits, []);
  });
});
