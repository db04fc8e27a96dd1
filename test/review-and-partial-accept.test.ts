import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { ac, acJson, makeSandbox, type Sandbox } from './helpers.js';

let sb: Sandbox | undefined;
afterEach(() => {
  sb?.cleanup();
  sb = undefined;
});

/** A workspace with a text file, a binary and a directory, and a run that changes all three. */
function changedCell(): Sandbox {
  const box = makeSandbox({
    'a.txt': 'one\ntwo\nthree\n',
    'bin.dat': 'x\0y',
    'sub/old.txt': 'old\n',
    'keep.txt': 'k\n',
  });
  spawnSync('git', ['init', '-q'], { cwd: box.workspace });
  const run = ac(
    box,
    'run',
    '--',
    'sh',
    '-c',
    'printf "one\\nTWO\\nthree\\nfour\\n" > a.txt; printf "z\\0" > bin.dat; mkdir -p new/deep; echo n > new/deep/n.txt; rm sub/old.txt; chmod +x keep.txt',
  );
  assert.equal(run.status, 0, run.stderr);
  return box;
}

describe('diff --patch and --stat', () => {
  it('prints unified diffs git can apply, names binaries, and counts lines; PATHs narrow it', () => {
    sb = changedCell();
    const patch = ac(sb, 'diff', '--patch');
    assert.equal(patch.status, 0, patch.stderr);
    assert.match(
      patch.stdout,
      /^diff --git a\/a\.txt b\/a\.txt\n--- a\/a\.txt\n\+\+\+ b\/a\.txt\n@@ -1,3 \+1,4 @@\n one\n-two\n\+TWO\n three\n\+four\n/m,
    );
    assert.match(patch.stdout, /^Binary files a\/bin\.dat and b\/bin\.dat differ$/m);
    assert.match(patch.stdout, /^new file mode 100644\n--- \/dev\/null\n\+\+\+ b\/new\/deep\/n\.txt$/m);
    assert.match(patch.stdout, /^deleted file mode 100644\n--- a\/sub\/old\.txt\n\+\+\+ \/dev\/null$/m);
    assert.match(patch.stdout, /^diff --git a\/keep\.txt b\/keep\.txt\nold mode 100644\nnew mode 100755$/m);

    // The text patches, applied by git to a copy of the workspace, give what the cell has.
    const text = ac(sb, 'diff', '--patch', 'a.txt', 'new', 'sub', 'keep.txt').stdout;
    assert.ok(!text.includes('bin.dat'), 'the PATHs narrow the patch');
    const copy = join(sb.root, 'copy');
    cpSync(sb.workspace, copy, { recursive: true });
    writeFileSync(join(sb.root, 'p.diff'), text);
    const applied = spawnSync('git', ['apply', join(sb.root, 'p.diff')], { cwd: copy, encoding: 'utf8' });
    assert.equal(applied.status, 0, applied.stderr);
    assert.equal(readFileSync(join(copy, 'a.txt'), 'utf8'), 'one\nTWO\nthree\nfour\n');
    assert.equal(readFileSync(join(copy, 'new/deep/n.txt'), 'utf8'), 'n\n');
    assert.equal(existsSync(join(copy, 'sub/old.txt')), false);
    assert.equal(readFileSync(join(sb.workspace, 'a.txt'), 'utf8'), 'one\ntwo\nthree\n', 'diff changed the workspace');

    const stat = ac(sb, 'diff', '--stat').stdout;
    assert.match(stat, /^ a\.txt +\| 3 \+\+-$/m);
    assert.match(stat, /^ bin\.dat +\| Bin$/m);
    assert.match(stat, /5 file\(s\) changed, 3 insertion\(s\)\(\+\), 2 deletion\(s\)\(-\)$/m);
    const json = acJson<{ path: string; binary: boolean; added: number; removed: number }[]>(
      sb,
      'diff',
      '--stat',
      '--json',
    );
    assert.deepEqual(
      json.map((p) => [p.path, p.binary, p.added, p.removed]),
      [
        ['a.txt', false, 2, 1],
        ['bin.dat', true, 0, 0],
        ['keep.txt', false, 0, 0],
        ['new/deep/n.txt', false, 1, 0],
        ['sub/old.txt', false, 0, 1],
      ],
    );
  });
});

describe('accept PATH… and --exclude', () => {
  it('applies only what is named (with the new directories above it); the rest stays pending and undecided', () => {
    sb = changedCell();
    const dry = acJson<{ applied: { path: string }[]; pending: number }>(
      sb,
      'accept',
      'new/deep/n.txt',
      '--dry-run',
      '--json',
    );
    assert.deepEqual(
      dry.applied.map((c) => c.path),
      ['new', 'new/deep', 'new/deep/n.txt'],
    );
    assert.equal(existsSync(join(sb.workspace, 'new')), false, 'dry run applied');

    const first = acJson<{ applied: { path: string }[]; pending: number; receipt: { scope: { paths: string[] } } }>(
      sb,
      ...['accept', 'new/deep/n.txt', 'a.txt', '--json'],
    );
    assert.equal(readFileSync(join(sb.workspace, 'new/deep/n.txt'), 'utf8'), 'n\n');
    assert.equal(readFileSync(join(sb.workspace, 'a.txt'), 'utf8'), 'one\nTWO\nthree\nfour\n');
    assert.equal(readFileSync(join(sb.workspace, 'bin.dat'), 'utf8'), 'x\0y', 'an unnamed path was applied');
    assert.ok(existsSync(join(sb.workspace, 'sub/old.txt')));
    assert.deepEqual(first.receipt.scope.paths, ['a.txt', 'new', 'new/deep', 'new/deep/n.txt']);
    assert.equal(first.pending, 3);

    const pending = acJson<{ path: string }[]>(sb, 'diff', '--json').map((c) => c.path);
    assert.deepEqual(pending, ['bin.dat', 'keep.txt', 'sub/old.txt']);
    // The run is still undecided: its other changes wait.
    const runs = (): string[] =>
      acJson<{ kind: string; decision: string }[]>(sb!, 'receipt', 'list', '--json')
        .filter((r) => r.kind === 'run')
        .map((r) => r.decision);
    assert.deepEqual(runs(), ['pending']);

    assert.equal(ac(sb, 'accept', '--exclude', 'sub', '--exclude', 'bin.dat').status, 0);
    assert.deepEqual(
      acJson<{ path: string }[]>(sb, 'diff', '--json').map((c) => c.path),
      ['bin.dat', 'sub/old.txt'],
    );
    assert.equal(ac(sb, 'accept').status, 0);
    assert.deepEqual(acJson<unknown[]>(sb, 'diff', '--json'), []);
    assert.equal(readFileSync(join(sb.workspace, 'bin.dat'), 'utf8'), 'z\0');
    assert.equal(existsSync(join(sb.workspace, 'sub/old.txt')), false);
    assert.deepEqual(runs(), ['accepted'], 'the last, full accept decides the run');
    assert.equal(ac(sb, 'receipt', 'verify').status, 0);
  });
});

describe('accept --merge', () => {
  it('refuses a host edit made after the run by name, then merges it three ways; overlapping edits get git’s markers', () => {
    sb = makeSandbox({ 'f.txt': '1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n', 'g.txt': 'a\nb\n', 'h.txt': 'same\n' });
    assert.equal(
      ac(sb, 'run', '--', 'sh', '-c', 'sed -i s/^2$/TWO/ f.txt; echo cell > g.txt; echo h2 > h.txt').status,
      0,
    );
    // Host edits after the run: f.txt far from the cell's change, g.txt on the same line.
    writeFileSync(join(sb.workspace, 'f.txt'), '1\n2\n3\n4\n5\n6\n7\n8\nNINE\n10\n');
    writeFileSync(join(sb.workspace, 'g.txt'), 'host\n');

    const refused = ac(sb, 'accept');
    assert.equal(refused.status, 2);
    assert.match(refused.stderr, /ACCEPT_CONFLICT|the host changed 2 path\(s\)/);
    assert.match(refused.stderr, /^ {2}f\.txt: the host changed this path since the run/m);
    assert.match(refused.stderr, /^ {2}g\.txt: /m);
    assert.equal(readFileSync(join(sb.workspace, 'h.txt'), 'utf8'), 'same\n', 'a refused accept applied something');

    const dry = acJson<{ merged: { path: string; conflicts: number }[] }>(
      sb,
      'accept',
      '--merge',
      '--dry-run',
      '--json',
    );
    assert.deepEqual(dry.merged, [
      { path: 'f.txt', conflicts: 0 },
      { path: 'g.txt', conflicts: 1 },
    ]);
    assert.equal(
      readFileSync(join(sb.workspace, 'f.txt'), 'utf8'),
      '1\n2\n3\n4\n5\n6\n7\n8\nNINE\n10\n',
      'dry run merged',
    );

    assert.equal(ac(sb, 'accept', '--merge').status, 0);
    assert.equal(
      readFileSync(join(sb.workspace, 'f.txt'), 'utf8'),
      '1\nTWO\n3\n4\n5\n6\n7\n8\nNINE\n10\n',
      'both edits kept',
    );
    assert.equal(
      readFileSync(join(sb.workspace, 'g.txt'), 'utf8'),
      '<<<<<<< g.txt (host)\nhost\n=======\ncell\n>>>>>>> g.txt (cell)\n',
      'nothing lost: both sides in git’s markers',
    );
    assert.equal(readFileSync(join(sb.workspace, 'h.txt'), 'utf8'), 'h2\n');
    assert.deepEqual(acJson<unknown[]>(sb, 'diff', '--json'), []);
  });
});
