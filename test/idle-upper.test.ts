import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { inCell, makeSandbox, type Sandbox } from './helpers.js';

/**
 * A run that changes nothing leaves no layer (src/workspace/overlay/idle-upper.ts): its
 * copy-ups are dropped, so a cell that runs `git status` over and over does not stack a
 * layer each (it refused its 130th run). And the attacks on the drop: an upper that
 * looks like nothing against the workspace but undoes or redoes what a layer below did
 * must be kept, or the run's change would be lost. Each driver (the kernel's overlayfs,
 * fuse-overlayfs, the copy driver) writes the upper its own way.
 */

const DRIVERS = ['kernel', 'fuse-overlayfs', 'copy'] as const;

function cellDir(sb: Sandbox): string {
  const cells = join(sb.agentcellHome, 'state', 'cells');
  const [name] = readdirSync(cells);
  return join(cells, name!);
}

const layers = (sb: Sandbox): string[] => readdirSync(join(cellDir(sb), 'layers'));
const upper = (sb: Sandbox): string[] => readdirSync(join(cellDir(sb), 'upper'));

function run(sb: Sandbox, script: string): string {
  const r = inCell(sb, script);
  assert.equal(r.status, 0, `${script}: ${r.stderr}`);
  return r.stdout;
}

for (const driver of DRIVERS) {
  describe(`a run that changes nothing leaves no layer (${driver})`, () => {
    const sandbox = (files: Record<string, string>): Sandbox => {
      const sb = makeSandbox(files);
      sb.env['AGENTCELL_OVERLAY_DRIVER'] = driver;
      return sb;
    };

    it('git status, again and again, in a fresh repo and after a commit in the cell', () => {
      const sb = sandbox({ 'a.txt': 'a\n', 'src/b.txt': 'b\n' });
      try {
        const git = (...args: string[]): void => {
          execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', ...args], { cwd: sb.workspace });
        };
        git('init', '-q');
        git('add', '-A');
        git('commit', '-qm', 'first');
        for (let i = 0; i < 4; i++) run(sb, 'git status --porcelain');
        assert.deepEqual(layers(sb), [], 'no layer for runs that changed nothing');
        assert.deepEqual(upper(sb), [], 'and no upper left to freeze next time');

        run(sb, 'echo c > c.txt && git add c.txt && git -c user.name=t -c user.email=t@t commit -qm second');
        const afterCommit = layers(sb).length;
        assert.ok(afterCommit >= 1, 'positive control: a commit is a change');
        // git rewrites its index while entries are racily clean (changed in the same second as the
        // index): a real change. A second later it settles, except on the copy driver: each run's
        // copy gives every file a new inode and ctime, which the index records, so git rewrites it
        // every time (a real change again).
        run(sb, 'sleep 1.2; git status --porcelain');
        const settled = layers(sb).length;
        for (let i = 0; i < 3; i++) run(sb, 'git status --porcelain');
        if (driver !== 'copy') assert.equal(layers(sb).length, settled, 'once the index settles, no layer');
        assert.match(run(sb, 'git log --format=%s'), /^second\nfirst\n$/);
      } finally {
        sb.cleanup();
      }
    });

    it('a file touched or rewritten with the same bytes, a directory an entry came and went in', () => {
      const sb = sandbox({ 'f.txt': 'same\n', 'd/keep.txt': 'k\n' });
      try {
        run(sb, 'touch f.txt && printf "k\\n" > d/keep.txt && touch d/tmp && rm d/tmp');
        assert.deepEqual(layers(sb), []);
        assert.deepEqual(upper(sb), []);
        assert.equal(run(sb, 'cat f.txt d/keep.txt'), 'same\nk\n');
      } finally {
        sb.cleanup();
      }
    });

    it("keeps a run that puts back what a layer below changed: a file's bytes, a mode, a deleted directory", () => {
      // Each alone: the undoing run matches the workspace, and is a change against the layer below.
      const cases = [
        { change: 'echo changed > f.txt', undo: 'echo original > f.txt', check: 'cat f.txt', shows: 'original\n' },
        { change: 'chmod 700 d', undo: 'chmod 755 d', check: 'stat -c %a d', shows: '755\n' },
        { change: 'rm -r empty', undo: 'mkdir empty && touch empty/.keep', check: 'ls -A empty', shows: '.keep\n' },
      ];
      for (const { change, undo, check, shows } of cases) {
        const sb = sandbox({ 'f.txt': 'original\n', 'd/x': 'x\n', 'empty/.keep': '' });
        try {
          chmodSync(join(sb.workspace, 'd'), 0o755);
          run(sb, change);
          assert.equal(layers(sb).length, 1, `${change}: a layer`);
          run(sb, undo);
          // Its receipt counts no change (the diff is against the workspace), so it is not frozen at
          // once: kept in the upper, the next run freezes it. Dropped, the layer's change would show again.
          assert.ok(upper(sb).length > 0 || layers(sb).length === 2, `${undo}: kept`);
          for (let i = 0; i < 2; i++) assert.equal(run(sb, check), shows, `${undo}, then ${check}`);
        } finally {
          sb.cleanup();
        }
      }
    });

    it('keeps a directory emptied and made again over what a layer below added (an opaque directory)', () => {
      const sb = sandbox({ 'd/.keep': '' });
      try {
        run(sb, 'echo secret > d/added.txt');
        assert.equal(layers(sb).length, 1);
        // Against the workspace `d` now looks as it was, save `.keep`: made again too.
        run(sb, 'rm -r d && mkdir d && touch d/.keep');
        assert.equal(run(sb, 'ls -A d'), '.keep\n', 'what the layer added stays gone');
        assert.equal(run(sb, 'ls -A d'), '.keep\n', 'and still, a run later');
      } finally {
        sb.cleanup();
      }
    });
  });
}
