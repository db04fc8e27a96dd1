import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ac, acJson, cellDirOf, makeSandbox, snapshot, startReadyRun, type Sandbox } from './helpers.js';

/**
 * The copy driver (no overlay mount: a copy of the merged view per run, its changes
 * written back as a kernel-format upper layer) on the edges a name-and-size diff would
 * miss, with secrets, and with agentcell killed mid-run.
 */

const diffLines = (sb: Sandbox): string[] =>
  acJson<{ path: string; change: string }[]>(sb, 'diff', '--json').map((c) => `${c.change} ${c.path}`);

function copySandbox(files: Record<string, string>): Sandbox {
  const sb = makeSandbox(files);
  sb.env['AGENTCELL_OVERLAY_DRIVER'] = 'copy';
  return sb;
}

describe('copy overlay driver', () => {
  it('sees a rewrite that keeps size and mtime, a chmod, a replaced directory and a retargeted symlink', () => {
    const sb = copySandbox({ 'a.txt': 'a\n', 'sub/k': 'k\n', 'gone/x': 'x\n', 'gone/y': 'y\n', t1: '1', t2: '2' });
    try {
      ac(sb, 'run', '--', 'sh', '-c', 'ln -s t1 link');
      assert.equal(ac(sb, 'accept').status, 0);
      const pristine = snapshot(sb.workspace);
      const r = ac(
        sb,
        'run',
        '--',
        'sh',
        '-c',
        `set -e; touch -r a.txt /tmp/ref; printf 'b\\n' > a.txt; touch -r /tmp/ref a.txt; chmod 700 sub; rm -r gone; mkdir gone; echo n > gone/new; ln -sfn t2 link`,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(snapshot(sb.workspace), pristine, 'the host workspace is untouched');
      assert.deepEqual(diffLines(sb).sort(), [
        'added gone/new',
        'deleted gone/x',
        'deleted gone/y',
        'modified a.txt',
        'modified link',
        'modified sub',
      ]);
      assert.equal(ac(sb, 'accept').status, 0);
      assert.equal(readFileSync(join(sb.workspace, 'a.txt'), 'utf8'), 'b\n');
      assert.deepEqual(readdirSync(join(sb.workspace, 'gone')), ['new']);
      assert.equal(statSync(join(sb.workspace, 'sub')).mode & 0o777, 0o700);
      assert.deepEqual(readdirSync(join(cellDirOf(sb), 'merged')), [], 'the copy is gone after the run');
    } finally {
      sb.cleanup();
    }
  });

  // `__proto__` can't be a key of a parsed object; `constructor` and the like find a prototype member.
  for (const [dir, file, added] of [
    ['__proto__', 'constructor', 'toString'],
    ['d', 'f', 'n'],
  ] as const)
    it(`sees exactly the changes to a directory ${dir}, a file ${file} and a new directory ${added}`, () => {
      const sb = copySandbox({ [`${dir}/k`]: 'k\n', [`${dir}/x`]: 'x\n', [file]: 'f\n', keep: 'keep\n' });
      try {
        const script = `set -e; chmod 700 ${dir}; echo cell > ${dir}/k; rm ${dir}/x; echo cell > ${file}; mkdir ${added}; echo n > ${added}/n`;
        const r = ac(sb, 'run', '--', 'sh', '-c', script);
        assert.equal(r.status, 0, r.stderr);
        assert.deepEqual(
          diffLines(sb).sort(),
          [
            `added ${added}`,
            `added ${added}/n`,
            `deleted ${dir}/x`,
            `modified ${dir}`,
            `modified ${dir}/k`,
            `modified ${file}`,
          ].sort(),
        );
        assert.equal(ac(sb, 'accept').status, 0);
        const after = snapshot(sb.workspace);
        assert.deepEqual(readdirSync(join(sb.workspace, dir)), ['k']);
        assert.equal(readFileSync(join(sb.workspace, dir, 'k'), 'utf8'), 'cell\n');
        assert.equal(statSync(join(sb.workspace, dir)).mode & 0o777, 0o700);
        assert.equal(readFileSync(join(sb.workspace, file), 'utf8'), 'cell\n');
        assert.equal(readFileSync(join(sb.workspace, added, 'n'), 'utf8'), 'n\n');
        // A run that changes nothing: nothing shows, the unchanged names included.
        assert.equal(ac(sb, 'run', '--', 'true').status, 0);
        assert.deepEqual(diffLines(sb), []);
        assert.deepEqual(snapshot(sb.workspace), after);
      } finally {
        sb.cleanup();
      }
    });

  it('keeps no copy of a masked secret in the state dir, even while the cell runs', async () => {
    const sb = copySandbox({ '.env': 'API_KEY=canary-copy\n', 'a.txt': 'a\n' });
    try {
      const child = await startReadyRun(sb, 'cat .env | wc -c');
      const exited = new Promise((resolve) => child.on('exit', resolve));
      const copy = join(cellDirOf(sb), 'merged', '.env');
      assert.ok(existsSync(join(cellDirOf(sb), 'merged', 'a.txt')), 'positive control: the copy is there');
      assert.equal(readFileSync(copy, 'utf8'), '', 'the copy of .env is empty');
      child.kill('SIGTERM');
      await exited;
      assert.deepEqual(diffLines(sb), []);
      assert.equal(readFileSync(join(sb.workspace, '.env'), 'utf8'), 'API_KEY=canary-copy\n');
    } finally {
      sb.cleanup();
    }
  });

  it('a run killed mid-way keeps its writes: the next command captures them and receipts it interrupted', async () => {
    const sb = copySandbox({ 'a.txt': 'a\n' });
    try {
      const pristine = snapshot(sb.workspace);
      const child = await startReadyRun(sb, 'echo x > f');
      const exited = new Promise((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      assert.ok(existsSync(join(cellDirOf(sb), 'copy-manifest.json')), 'the copy run is pending');
      const next = ac(sb, 'run', '--', 'sh', '-c', 'cat f; echo y > g');
      assert.equal(next.status, 0, next.stderr);
      assert.equal(next.stdout, 'x\n', 'the next run sees the killed run’s write');
      assert.deepEqual(diffLines(sb).sort(), ['added f', 'added g']);
      const list = acJson<{ status: string; changes: { added: number } }[]>(sb, 'receipt', 'list', '--json');
      assert.deepEqual(
        list.map((r) => [r.status, r.changes.added]),
        [
          ['interrupted', 1],
          ['completed', 1],
        ],
      );
      assert.deepEqual(snapshot(sb.workspace), pristine);
    } finally {
      sb.cleanup();
    }
  });

  it('captures a run left pending with a manifest of the version before (an object keyed by path)', async () => {
    const sb = copySandbox({ 'a.txt': 'a\n', 'b.txt': 'b\n' });
    try {
      const child = await startReadyRun(sb, 'echo x > f; echo cell > a.txt; rm b.txt');
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGKILL');
      await exited;
      const manifest = join(cellDirOf(sb), 'copy-manifest.json');
      const { paths } = JSON.parse(readFileSync(manifest, 'utf8')) as { paths: [string, string][] };
      writeFileSync(manifest, JSON.stringify(Object.fromEntries(paths)));
      const next = ac(sb, 'run', '--', 'true');
      assert.equal(next.status, 0, next.stderr);
      assert.deepEqual(diffLines(sb).sort(), ['added f', 'deleted b.txt', 'modified a.txt']);
    } finally {
      sb.cleanup();
    }
  });
});
