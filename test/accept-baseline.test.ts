import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { baseContent, clearBaselines, findConflicts, recordBaselines } from '../src/workspace/accept-baseline.js';
import { AgentcellError } from '../src/errors.js';
import { makeSandbox, type Sandbox } from './helpers.js';

/**
 * accept's record of the host's side of changed paths (accept-baseline.json), on its
 * own: paths an object keyed by path gets wrong, and a file of the first version.
 */

let sb: Sandbox | undefined;
afterEach(() => {
  sb?.cleanup();
  sb = undefined;
});

const LAYER = 'layer-1';

/** A workspace of `names` and an empty cell dir. */
function setup(names: readonly string[]): { sb: Sandbox; cellDir: string } {
  sb = makeSandbox(Object.fromEntries(names.map((n) => [n, `${n} at run start\n`])));
  const cellDir = join(sb.root, 'cell');
  mkdirSync(cellDir);
  return { sb, cellDir };
}

/** A run start after the workspace was written: its files were not changed while the run ran. */
const afterSetup = (): number => Date.now() + 1000;

/** The file's entries as written: a list of `{ path, … }`. */
function recorded(cellDir: string): { version: number; paths: { path: string; layer: string }[] } {
  return JSON.parse(readFileSync(join(cellDir, 'accept-baseline.json'), 'utf8')) as {
    version: number;
    paths: { path: string; layer: string }[];
  };
}

describe('accept baselines', () => {
  for (const names of [
    ['__proto__', 'constructor', 'hasOwnProperty', 'toString'],
    ['a.txt', 'b.txt', 'c.txt', 'd.txt'],
  ])
    it(`records, judges and keeps the base of ${names.join(', ')}`, () => {
      const { sb, cellDir } = setup(names);
      const runStartedAt = afterSetup();
      recordBaselines(cellDir, {
        layer: LAYER,
        liveLayers: [LAYER],
        runStartedAt,
        workspace: sb.workspace,
        paths: names,
      });
      assert.deepEqual(findConflicts(cellDir, [LAYER], sb.workspace, names), new Map(), 'no host edit yet');
      for (const n of names) {
        const base = baseContent(cellDir, [LAYER], n);
        assert.ok(base !== undefined, `a base for ${n}`);
        assert.equal(base.toString('utf8'), `${n} at run start\n`);
      }
      for (const n of names) writeFileSync(join(sb.workspace, n), 'host edit, a longer line\n');
      assert.deepEqual(
        findConflicts(cellDir, [LAYER], sb.workspace, names),
        new Map(names.map((n) => [n, 'the host changed this path since the run'])),
      );
      assert.deepEqual(
        findConflicts(cellDir, ['other-layer'], sb.workspace, names),
        new Map(),
        'a dropped layer: void',
      );
      // On disk, a list: a path is never an object's key.
      const file = recorded(cellDir);
      assert.equal(file.version, 2);
      assert.deepEqual(
        file.paths.map((p) => p.path),
        names,
      );
    });

  it('still reads a version 1 file, and writes it back as version 2 keeping its entries', () => {
    const { sb, cellDir } = setup(['a.txt', 'constructor', 'new.txt']);
    const stat = lstatSync(join(sb.workspace, 'a.txt'));
    const host = { kind: 'file', ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs };
    const v1 = {
      version: 1,
      paths: {
        'a.txt': { layer: LAYER, host },
        constructor: { layer: LAYER, host: null },
        'gone.txt': { layer: 'dropped-layer', host: null },
      },
    };
    writeFileSync(join(cellDir, 'accept-baseline.json'), JSON.stringify(v1));
    assert.deepEqual(
      findConflicts(cellDir, [LAYER], sb.workspace, ['a.txt', 'constructor', 'gone.txt']),
      new Map([['constructor', 'the host created this path since the run']]),
    );
    writeFileSync(join(sb.workspace, 'a.txt'), 'host edit, a longer line\n');
    assert.equal(
      findConflicts(cellDir, [LAYER], sb.workspace, ['a.txt']).get('a.txt'),
      'the host changed this path since the run',
    );

    // A later run's record: the older entries stay (the first run's baseline counts), the new one is added.
    recordBaselines(cellDir, {
      layer: 'layer-2',
      liveLayers: [LAYER, 'layer-2'],
      runStartedAt: afterSetup(),
      workspace: sb.workspace,
      paths: ['a.txt', 'new.txt'],
    });
    const file = recorded(cellDir);
    assert.equal(file.version, 2);
    assert.deepEqual(
      file.paths.map((p) => [p.path, p.layer]),
      [
        ['a.txt', LAYER],
        ['constructor', LAYER],
        ['new.txt', 'layer-2'],
      ],
    );
    assert.equal(
      findConflicts(cellDir, [LAYER, 'layer-2'], sb.workspace, ['a.txt']).get('a.txt'),
      'the host changed this path since the run',
      'the version 1 baseline still judges a.txt',
    );
  });

  it("keeps a recording's bases in one pack file, checks each against its hash, and clears them into the trash", () => {
    const names = Array.from({ length: 40 }, (_, i) => `f${i}.txt`);
    const { sb, cellDir } = setup(names);
    recordBaselines(cellDir, {
      layer: LAYER,
      liveLayers: [LAYER],
      runStartedAt: afterSetup(),
      workspace: sb.workspace,
      paths: names,
    });
    // One file for 40 bases (a file a base made a big run's end take seconds), no temp left.
    const packs = readdirSync(join(cellDir, 'baseline-blobs'));
    assert.equal(packs.length, 1, packs.join(', '));
    assert.match(packs[0]!, /^[0-9a-f]+\.pack$/);
    for (const n of names) assert.equal(baseContent(cellDir, [LAYER], n)?.toString(), `${n} at run start\n`);

    // A pack damaged (a crash before the disk had it, a hand): the bases it breaks are gone, never wrong.
    const pack = join(cellDir, 'baseline-blobs', packs[0]!);
    const bytes = readFileSync(pack);
    bytes[0] = bytes[0]! ^ 0xff; // inside f0.txt's slice
    writeFileSync(pack, bytes.subarray(0, bytes.length - 3)); // and the last one cut short
    assert.equal(baseContent(cellDir, [LAYER], 'f0.txt'), undefined);
    assert.equal(baseContent(cellDir, [LAYER], 'f39.txt'), undefined);
    assert.equal(baseContent(cellDir, [LAYER], 'f1.txt')?.toString(), 'f1.txt at run start\n');

    const trashed = clearBaselines(cellDir);
    assert.equal(trashed.length, 1);
    assert.ok(trashed[0]!.startsWith(join(cellDir, 'trash') + '/'), trashed[0]);
    assert.deepEqual(readdirSync(trashed[0]!), packs, 'moved whole, for the purge after the receipt');
    assert.ok(!existsSync(join(cellDir, 'baseline-blobs')) && !existsSync(join(cellDir, 'accept-baseline.json')));
    assert.deepEqual(clearBaselines(cellDir), [], 'nothing left to clear');
  });

  it('still reads a base kept as its own file, as agentcell kept them before packs', () => {
    const { sb, cellDir } = setup(['a.txt']);
    const stat = lstatSync(join(sb.workspace, 'a.txt'));
    const content = 'a.txt at run start\n';
    const blob = createHash('sha256').update(content).digest('hex');
    mkdirSync(join(cellDir, 'baseline-blobs'));
    writeFileSync(join(cellDir, 'baseline-blobs', blob), content);
    const host = { kind: 'file', ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs, ctimeMs: stat.ctimeMs };
    writeFileSync(
      join(cellDir, 'accept-baseline.json'),
      JSON.stringify({ version: 2, paths: [{ path: 'a.txt', layer: LAYER, host, blob }] }),
    );
    assert.equal(baseContent(cellDir, [LAYER], 'a.txt')?.toString(), content);
    writeFileSync(join(cellDir, 'baseline-blobs', blob), 'edited by hand\n');
    assert.equal(baseContent(cellDir, [LAYER], 'a.txt'), undefined);
  });

  it('a damaged file is an error naming it, never "no baseline"', () => {
    const { sb, cellDir } = setup(['a.txt']);
    for (const text of ['{"version":2,"paths":{"a.txt":{"layer":"x","host":null}}}', '{"version":3,"paths":[]}']) {
      writeFileSync(join(cellDir, 'accept-baseline.json'), text);
      assert.throws(
        () => findConflicts(cellDir, [LAYER], sb.workspace, ['a.txt']),
        (e: unknown) =>
          e instanceof AgentcellError && e.code === 'STATE_CORRUPT' && /accept-baseline\.json/.test(e.message),
      );
    }
  });
});
