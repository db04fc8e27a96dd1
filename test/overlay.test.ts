import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  closeSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { CellSpec } from '../src/backends/backend.js';
import { planBwrap } from '../src/backends/bwrap-backend.js';
import { buildSeccompFilter } from '../src/backends/seccomp-filter.js';
import type { LayerChange } from '../src/workspace/overlay/layer-diff.js';
import { diffLayers } from '../src/workspace/overlay/layer-diff.js';
import type { LayerStack } from '../src/workspace/overlay/layer-stack.js';
import {
  checkpoint,
  fork,
  lowerDirs,
  openLayerStack,
  peekLayerStack,
  restore,
} from '../src/workspace/overlay/layer-stack.js';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { purgeTrash } from '../src/workspace/overlay/layer-trash.js';
import { overlaySupport, overlayWrapper } from '../src/workspace/overlay/overlay-mount.js';
import { readOverlayXattrs } from '../src/workspace/overlay/overlay-xattrs.js';
import { makeNeutralDir } from '../src/_internal/neutral-dir.js';
import { rootRange } from '../src/backends/uid-shift.js';

/**
 * The overlay workspace for real: unshare mounts the layers, bwrap (planned by the
 * backend) runs the cell on the merged view, and the host workspace never changes.
 * Runs as root and as an unprivileged user.
 */

const SUPPORT = overlaySupport();
const DRIVERS = ['kernel', 'fuse-overlayfs'] as const;

interface CellResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a script in a cell on the stack's merged view, the way the bwrap backend will. */
function runCell(stack: LayerStack, workspace: string, script: string): Promise<CellResult> {
  const wrapper = overlayWrapper(stack, workspace, overlaySupport(tmpdir(), stack.driver).tools);
  const spec: CellSpec = {
    cell: 'overlay-test',
    rootfs: { kind: 'host' },
    workspace: {
      path: workspace,
      mode: 'overlay',
      overlay: { argvPrefix: wrapper.argvPrefix, merged: wrapper.merged },
    },
    masks: existsSync(join(workspace, '.env')) ? [{ target: join(workspace, '.env'), kind: 'file' }] : [],
    readonlyPaths: existsSync(join(workspace, '.git/hooks')) ? [join(workspace, '.git/hooks')] : [],
    mounts: [],
    home: '/home/cell',
    cwd: workspace,
    argv: ['/bin/sh', '-c', script],
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/home/cell', LANG: 'C.UTF-8' },
    identity: { uid: 1000, gid: 1000 },
    network: 'none',
    limits: {},
    seccomp: true,
    tty: false,
  };
  // The backend's own composition: the overlay wrapper, then bwrap (for a root caller, on
  // idmapped layers under root's subordinate uid: uid-shift.ts).
  const plan = planBwrap(spec);
  assert.ok(
    plan.argv.some((arg, i) => arg === '--bind' && plan.argv[i + 2] === workspace),
    'the plan binds the workspace',
  );
  if (plan.stageDir) makeNeutralDir(plan.stageDir);
  const [command, ...args] = plan.argv;
  const filter = buildSeccompFilter();
  const emptyFd = openSync('/dev/null', 'r');
  return new Promise((resolve, reject) => {
    const child = spawn(command!, args, {
      env: plan.env,
      stdio: ['ignore', 'pipe', 'pipe', filter ? 'pipe' : 'ignore', emptyFd],
      detached: true,
    });
    const seccompPipe = child.stdio[3] as Writable | null;
    if (filter && seccompPipe) {
      seccompPipe.on('error', () => undefined);
      seccompPipe.end(filter.program);
    }
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => {
      closeSync(emptyFd);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Every entry under a directory with its type, permissions, mtime and content hash. */
function snapshot(root: string): Map<string, string> {
  const entries = new Map<string, string>();
  const walk = (rel: string): void => {
    const full = join(root, rel);
    const st = lstatSync(full);
    let detail = `${st.mode.toString(8)} ${st.mtimeMs} ${st.uid}`;
    if (st.isFile()) detail += ' ' + createHash('sha256').update(readFileSync(full)).digest('hex');
    if (st.isSymbolicLink()) detail += ' -> ' + readlinkSync(full);
    entries.set(rel || '.', detail);
    if (st.isDirectory()) for (const name of readdirSync(full)) walk(rel ? `${rel}/${name}` : name);
  };
  walk('');
  return entries;
}

function write(root: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
}

/** fuse-overlayfs processes still serving a cell dir's layers. */
function fuseDaemonsOf(cellDir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      if (cmdline.includes('fuse-overlayfs') && cwd.startsWith(cellDir)) found.push(`${pid} ${cmdline}`);
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** Host mounts under this test's root (other overlays on the host, e.g. container engines' and OCI cells', are not its own). */
function hostMountsUnder(root: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.includes(root));
}

const byPath = (a: LayerChange, b: LayerChange): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
const changes = (list: [string, LayerChange['change'], LayerChange['kind']][]): LayerChange[] =>
  list.map(([path, change, kind]) => ({ path, change, kind })).sort(byPath);

for (const driver of DRIVERS)
  describe(`overlay workspace (${driver})`, () => {
    const support = overlaySupport(tmpdir(), driver);
    let root: string;
    let workspace: string;
    let cellDir: string;
    let stack: LayerStack;
    let pristine: Map<string, string>;

    before(() => {
      assert.equal(support.available, true, `overlay support: ${support.detail}`);
      root = mkdtempSync(join(tmpdir(), 'agentcell-overlay-'));
      workspace = join(root, 'work');
      cellDir = join(root, 'state', 'cells', 'c1');
      write(workspace, {
        'a.txt': 'a\n',
        'del.txt': 'delete me\n',
        'same.txt': 'same\n',
        'mode.sh': 'echo hi\n',
        'gone/x': 'x\n',
        'gone/y/z': 'z\n',
        'redo/old': 'old\n',
        'redo/keep': 'k\n',
        'mvme/f': 'f\n',
        'sub/b.txt': 'b\n',
        '.env': 'API_KEY=canary\n',
        '.git/hooks/pre-commit': '#!/bin/sh\n',
      });
      symlinkSync('a.txt', join(workspace, 'link'));
      chmodSync(join(workspace, 'mode.sh'), 0o644);
      pristine = snapshot(workspace);
      stack = openLayerStack(cellDir, driver);
      assert.equal(stack.driver, driver);
    });
    after(() => removeTrees([root]));

    const RUN1_DIFF = changes([
      ['a.txt', 'modified', 'file'],
      ['del.txt', 'deleted', 'file'],
      ['gone', 'deleted', 'dir'],
      ['gone/x', 'deleted', 'file'],
      ['gone/y', 'deleted', 'dir'],
      ['gone/y/z', 'deleted', 'file'],
      ['link', 'modified', 'symlink'],
      ['mode.sh', 'modified', 'file'],
      ['moved', 'added', 'dir'],
      ['moved/f', 'added', 'file'],
      ['mvme', 'deleted', 'dir'],
      ['mvme/f', 'deleted', 'file'],
      ['new.txt', 'added', 'file'],
      ['newdir', 'added', 'dir'],
      ['newdir/f', 'added', 'file'],
      ['redo/new', 'added', 'file'],
      ['redo/old', 'deleted', 'file'],
    ]);
    let firstLayer: string;

    it('the wrapper is pure: planning it touches nothing', () => {
      const before = snapshot(cellDir);
      const wrapper = overlayWrapper(stack, workspace, support.tools);
      assert.equal(wrapper.merged, join(cellDir, 'merged'));
      assert.equal(wrapper.argvPrefix[0], support.tools!.unshare);
      assert.deepEqual(wrapper.argvPrefix.slice(1, 7), [
        '--user',
        '--map-root-user',
        '--mount',
        '--propagation',
        'private',
        '--',
      ]);
      assert.deepEqual(snapshot(cellDir), before);
      assert.deepEqual(lowerDirs(stack, workspace), [workspace]);
    });

    it('a run changes the merged view only: the host workspace is untouched, diff lists the changes', async () => {
      const r = await runCell(
        stack,
        workspace,
        [
          'set -e',
          'echo more >> a.txt',
          'rm del.txt',
          'rm -rf gone',
          'rm -rf redo && mkdir redo && echo k > redo/keep && echo n > redo/new',
          'touch same.txt',
          'chmod 755 mode.sh',
          'ln -sfn sub/b.txt link',
          'echo new > new.txt',
          'mkdir newdir && echo f > newdir/f',
          'mv mvme moved',
          'test "$(id -u)" = 1000',
          'cat a.txt',
          'exit 7',
        ].join('\n'),
      );
      assert.equal(r.status, 7, `exit code passes through; stderr: ${r.stderr}`);
      assert.equal(r.stdout, 'a\nmore\n');
      assert.deepEqual(snapshot(workspace), pristine, 'the host workspace is byte-for-byte unchanged');
      assert.deepEqual(hostMountsUnder(root), [], 'nothing stays mounted on the host');

      const upper = stack.upper;
      const uid = process.getuid!();
      // A root caller's overlay is mounted over idmapped layers (uid-shift.ts): what the
      // kernel writes as host root itself (whiteouts) lands as the idmap's id for host root.
      const range = uid === 0 && driver === 'kernel' ? rootRange('/etc/subuid') : undefined;
      for (const name of readdirSync(upper)) {
        const st = lstatSync(join(upper, name));
        assert.equal(st.uid, range && st.isCharacterDevice() ? range.count : uid, `${name} owned by us`);
      }
      const whiteout = lstatSync(join(upper, 'del.txt'));
      assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'a deletion is a 0/0 whiteout');
      const xattrs = await readOverlayXattrs([upper]);
      const opaque = driver === 'kernel' ? 'user.overlay.opaque' : 'user.fuseoverlayfs.opaque';
      assert.equal(xattrs.get(join(upper, 'redo'))?.get(opaque)?.toString(), 'y', 'redo is opaque');
      assert.deepEqual(fuseDaemonsOf(cellDir), [], 'no fuse-overlayfs daemon outlives the cell');

      assert.deepEqual(await diffLayers(stack, workspace), RUN1_DIFF);
    });

    it('both xattr readers agree', async () => {
      assert.deepEqual(await diffLayers(stack, workspace, { xattrReader: 'python3' }), RUN1_DIFF);
      assert.deepEqual(await diffLayers(stack, workspace, { xattrReader: 'getfattr' }), RUN1_DIFF);
    });

    it('control-plane paths stay read-only, masks hide secrets, and neither leaves a trace in the layer', async () => {
      const r = await runCell(
        stack,
        workspace,
        [
          'echo x > .git/hooks/pre-commit && echo HOOK-WRITTEN',
          'cat .env && echo ENV-READ',
          'grep -q "^Seccomp:[[:space:]]*2" /proc/self/status && echo SECCOMP',
          'unshare -U true 2>/dev/null && echo USERNS-ALLOWED',
          'exit 0',
        ].join('\n'),
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'SECCOMP\n');
      assert.deepEqual(await diffLayers(stack, workspace), RUN1_DIFF);
      assert.deepEqual(snapshot(workspace), pristine);
    });

    it('checkpoint freezes the layer; the next run sees it and stacks on it', async () => {
      const { stack: next, layer } = checkpoint(stack, { name: 'first', policyHash: 'sha256:p1' });
      stack = next;
      firstLayer = layer.id;
      assert.equal(stack.layers.length, 1);
      assert.deepEqual(readdirSync(stack.upper), [], 'a fresh upper layer');
      assert.deepEqual(lowerDirs(stack, workspace), [layer.dir, workspace]);
      assert.deepEqual(await diffLayers(stack, workspace), RUN1_DIFF, 'a checkpoint changes no diff');
      const json = JSON.parse(readFileSync(join(cellDir, 'layers.json'), 'utf8')) as { layers: { name: string }[] };
      assert.equal(json.layers[0]!.name, 'first');
      assert.throws(() => checkpoint(stack, { name: 'first', policyHash: 'x' }), /already exists/);

      const r = await runCell(
        stack,
        workspace,
        [
          'set -e',
          'cat new.txt',
          'rm new.txt',
          'rm -rf newdir',
          'echo more >> sub/b.txt',
          'echo x > x.txt',
          'echo again > del.txt',
          'rm a.txt',
        ].join('\n'),
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'new\n');
      assert.deepEqual(snapshot(workspace), pristine);
      assert.deepEqual(
        await diffLayers(stack, workspace),
        changes([
          ['a.txt', 'deleted', 'file'],
          ['del.txt', 'modified', 'file'],
          ['gone', 'deleted', 'dir'],
          ['gone/x', 'deleted', 'file'],
          ['gone/y', 'deleted', 'dir'],
          ['gone/y/z', 'deleted', 'file'],
          ['link', 'modified', 'symlink'],
          ['mode.sh', 'modified', 'file'],
          ['moved', 'added', 'dir'],
          ['moved/f', 'added', 'file'],
          ['mvme', 'deleted', 'dir'],
          ['mvme/f', 'deleted', 'file'],
          ['redo/new', 'added', 'file'],
          ['redo/old', 'deleted', 'file'],
          ['sub/b.txt', 'modified', 'file'],
          ['x.txt', 'added', 'file'],
        ]),
      );
    });

    it('fork copies the stack: the fork has the same diff and runs independently', async () => {
      const forked = fork(stack, join(root, 'state', 'cells', 'c2'));
      assert.deepEqual(await diffLayers(forked, workspace), await diffLayers(stack, workspace));
      const r = await runCell(forked, workspace, 'echo fork >> sub/b.txt && echo forked > only-in-fork');
      assert.equal(r.status, 0, r.stderr);
      const original = await diffLayers(stack, workspace);
      assert.ok(!original.some((c) => c.path === 'only-in-fork'));
      assert.ok((await diffLayers(forked, workspace)).some((c) => c.path === 'only-in-fork'));
      assert.equal(
        readFileSync(join(stack.upper, 'sub/b.txt'), 'utf8'),
        'b\nmore\n',
        "the original's upper is its own",
      );
      assert.throws(() => fork(stack, forked.cellDir), /already has a layer stack/);
    });

    it('restore to the checkpoint gives the checkpoint diff; restore all gives an empty diff', async () => {
      const toFirst = restore(stack, { to: firstLayer });
      stack = toFirst.stack;
      assert.deepEqual(toFirst.dropped, []);
      assert.equal(stack.layers.length, 1);
      assert.deepEqual(await diffLayers(stack, workspace), RUN1_DIFF);

      const r = await runCell(stack, workspace, 'test -f new.txt && test ! -e x.txt');
      assert.equal(r.status, 0, `the cell sees the checkpoint; ${r.stderr}`);

      const all = restore(stack);
      stack = all.stack;
      assert.equal(all.dropped.length, 1);
      assert.equal(stack.layers.length, 0);
      assert.deepEqual(await diffLayers(stack, workspace), []);
      purgeTrash(cellDir);
      assert.deepEqual(readdirSync(join(cellDir, 'trash')), []);
      assert.deepEqual(readdirSync(join(cellDir, 'layers')), []);

      const clean = await runCell(stack, workspace, 'cat a.txt && test -f del.txt && test -d gone');
      assert.equal(clean.status, 0, clean.stderr);
      assert.equal(clean.stdout, 'a\n');
      assert.deepEqual(snapshot(workspace), pristine);
      assert.deepEqual(hostMountsUnder(root), []);
    });

    it('restore refuses an unknown checkpoint', () => {
      assert.throws(() => restore(stack, { to: 'nope' }), /no checkpoint "nope"/);
    });
  });

describe('overlay mechanism edges', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'agentcell-overlay-edges-'));
  });
  after(() => removeTrees([root]));

  it('mounts a workspace whose path has , : " and spaces', async () => {
    const workspace = join(root, 'odd, "name": here');
    write(workspace, { 'f.txt': 'f\n' });
    const stack = openLayerStack(join(root, 'cell-odd'));
    const r = await runCell(stack, workspace, 'cat f.txt && echo g > g.txt');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'f\n');
    assert.deepEqual(await diffLayers(stack, workspace), changes([['g.txt', 'added', 'file']]));
    assert.ok(!existsSync(join(workspace, 'g.txt')));
  });

  it('reads opaque dirs whose names hold a backslash, a newline, = and non-ASCII, with either reader', async () => {
    const workspace = join(root, 'ws-names');
    const odd = 'we\\ird\nna=mé';
    write(workspace, { [`${odd}/old`]: 'o\n', [`${odd}/keep`]: 'k\n' });
    const stack = openLayerStack(join(root, 'cell-names'));
    const r = await runCell(
      stack,
      workspace,
      `d='${odd}'; rm -rf "$d" && mkdir "$d" && echo k > "$d/keep" && echo n > "$d/new"`,
    );
    assert.equal(r.status, 0, r.stderr);
    const expected = changes([
      [`${odd}/new`, 'added', 'file'],
      [`${odd}/old`, 'deleted', 'file'],
    ]);
    assert.deepEqual(await diffLayers(stack, workspace, { xattrReader: 'getfattr' }), expected);
    assert.deepEqual(await diffLayers(stack, workspace, { xattrReader: 'python3' }), expected);
  });

  it('the probe says why when it cannot run, and creates nothing', () => {
    const support = overlaySupport('/proc/agentcell-no-such-dir');
    assert.equal(support.available, false);
    assert.match(support.detail, /cannot probe overlayfs in/);
    assert.ok(!existsSync('/proc/agentcell-no-such-dir'));
  });

  it('refuses a state dir inside the workspace (the cell would see its own layers)', () => {
    const workspace = join(root, 'ws-nested');
    mkdirSync(workspace);
    const stack = openLayerStack(join(workspace, '.agentcell', 'cell'));
    assert.throws(() => overlayWrapper(stack, workspace), /overlap/);
  });

  it('a failed mount exits 125 with a message, before the command runs', async () => {
    const stack = openLayerStack(join(root, 'cell-missing'));
    const r = await runCell(stack, join(root, 'does-not-exist'), 'echo RAN');
    assert.equal(r.status, 125);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /agentcell-overlay/);
  });

  it('the cell dies with its parent and leaves no mount behind', async () => {
    const workspace = join(root, 'ws-parent');
    write(workspace, { 'f.txt': 'f\n' });
    const stack = openLayerStack(join(root, 'cell-parent'));
    const marker = join(root, 'started');
    // A shell parent starts the cell in the background and is then killed.
    const wrapper = overlayWrapper(stack, workspace, SUPPORT.tools);
    const bwrap = [
      'bwrap',
      '--unshare-all',
      '--die-with-parent',
      '--ro-bind',
      '/',
      '/',
      '--bind',
      wrapper.merged,
      workspace,
      '--bind',
      root,
      root,
      '/bin/sh',
      '-c',
      `touch ${marker}; sleep 30`,
    ];
    const parent = spawn('/bin/sh', ['-c', '"$@" & wait', 'parent', ...wrapper.argvPrefix, ...bwrap], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 100 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(existsSync(marker), 'the cell started');
    const cellPid = Number(readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').trim());
    assert.ok(cellPid > 0);
    parent.kill('SIGKILL');
    let alive = true;
    for (let i = 0; i < 100 && alive; i++) {
      await new Promise((r) => setTimeout(r, 50));
      alive = existsSync(`/proc/${cellPid}`) && !readFileSync(`/proc/${cellPid}/stat`, 'utf8').includes(') Z ');
    }
    assert.equal(alive, false, 'bwrap died with its parent');
    assert.deepEqual(hostMountsUnder(root), []);
  });

  it('peekLayerStack reads the stack and creates nothing', () => {
    const cellDir = join(root, 'cell-peek');
    const peeked = peekLayerStack(cellDir);
    assert.deepEqual(peeked.layers, []);
    assert.equal(peeked.merged, join(cellDir, 'merged'));
    assert.ok(!existsSync(cellDir));
  });

  it('openLayerStack finishes a checkpoint that a crash interrupted', () => {
    const cellDir = join(root, 'cell-crash');
    openLayerStack(cellDir);
    writeFileSync(join(cellDir, 'upper', 'work.txt'), 'w\n');
    // The state a crash leaves between committing layers.json and the renames.
    writeFileSync(
      join(cellDir, 'layers.json'),
      JSON.stringify({
        version: 1,
        nextSeq: 2,
        layers: [{ id: 'abcd0123', seq: 1, createdAt: new Date().toISOString(), policyHash: 'p' }],
        pending: { op: 'checkpoint', dir: '0001-abcd0123' },
      }),
    );
    const stack = openLayerStack(cellDir);
    assert.equal(stack.layers.length, 1);
    assert.equal(readFileSync(join(stack.layers[0]!.dir, 'work.txt'), 'utf8'), 'w\n');
    assert.deepEqual(readdirSync(stack.upper), []);
    assert.equal(
      (JSON.parse(readFileSync(join(cellDir, 'layers.json'), 'utf8')) as { pending?: unknown }).pending,
      undefined,
    );
  });
});
