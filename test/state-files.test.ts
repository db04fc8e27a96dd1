import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { anchorPath } from '../src/receipts/chain-anchor.js';
import { openLayerStack } from '../src/workspace/overlay/layer-stack.js';
import {
  ac,
  acJson,
  cellDirOf,
  inCell,
  makeSandbox,
  snapshot,
  startReadyRun,
  waitFor,
  type CliResult,
  type Sandbox,
} from './helpers.js';

/**
 * agentcell's state files on a real cell (bwrap, the default backend): a damaged one is
 * an error naming the file, what is wrong and what to do, and nothing is changed or lost
 * on the way; a damaged cache is rebuilt; and the commands that only read leave the
 * state dir exactly as they found it.
 */

/** A sandbox whose default cell has run twice (two receipts, a checkpoint between) and holds a pending change. */
function cellWithHistory(): { sb: Sandbox; dir: string; name: string } {
  const sb = makeSandbox({ 'README.md': 'hello\n' });
  assert.equal(inCell(sb, 'echo one > one.txt').status, 0);
  assert.equal(ac(sb, 'checkpoint', '--name', 'first').status, 0);
  assert.equal(inCell(sb, 'echo two > two.txt').status, 0);
  const dir = cellDirOf(sb);
  return { sb, dir, name: dir.split('/').at(-1)! };
}

/** The error a `--json` command printed (it must have failed). */
function errorOf(r: CliResult): { code: string; message: string } {
  assert.notEqual(r.status, 0, `expected a failure, got exit 0: ${r.stdout}`);
  return (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
}

/**
 * Every path with its mode, size, mtime and content hash, but a directory's mtime left
 * out: a writing command takes the cell's lock (a file made and removed in the cell dir)
 * before it reads the damaged file, which changes nothing kept.
 */
function kept(root: string): Map<string, string> {
  const entries = snapshot(root);
  for (const [path, detail] of entries) if (detail.startsWith('40')) entries.set(path, detail.split(' ')[0]!);
  return entries;
}

function receiptFiles(dir: string): string[] {
  return readdirSync(join(dir, 'receipts'))
    .filter((n) => n.endsWith('.json'))
    .sort()
    .map((n) => join(dir, 'receipts', n));
}

describe('a damaged state file', () => {
  let sb: Sandbox;
  let dir: string;
  let name: string;
  before(() => ({ sb, dir, name } = cellWithHistory()));
  after(() => sb.cleanup());

  /**
   * Damages `file` (restored afterwards), then runs each command: each must fail with
   * `code`, naming the file and `what` (zod's path or the JSON error), and leave every
   * file of the sandbox (state, config, workspace) byte for byte, mode and mtime as it was.
   */
  function assertRefused(file: string, damage: string, code: string, what: RegExp, commands: string[][]): void {
    const good = readFileSync(file);
    writeFileSync(file, damage);
    try {
      const before = kept(sb.root);
      for (const args of commands) {
        const error = errorOf(ac(sb, ...args));
        assert.equal(error.code, code, `${args.join(' ')}: ${error.message}`);
        assert.ok(error.message.includes(file), `${args.join(' ')} names ${file}: ${error.message}`);
        assert.match(error.message, what, args.join(' '));
        assert.deepEqual(kept(sb.root), before, `${args.join(' ')} changed nothing`);
      }
    } finally {
      writeFileSync(file, good);
    }
  }

  /** `file` with `field` set to `value`: well-formed JSON its schema refuses. */
  const withField = (file: string, field: string, value: unknown): string =>
    JSON.stringify({ ...(JSON.parse(readFileSync(file, 'utf8')) as object), [field]: value });
  const deciders = (): string[][] => [
    ['accept', '--json'],
    ['restore', '--json'],
    ['run', '--json', '--', 'true'],
  ];

  it('cell.json (its workspace decides where accept writes): every command refuses, naming the file and field', () => {
    const file = join(dir, 'cell.json');
    const commands = [
      ['cell', 'show', name, '--json'],
      ['diff', '--json'],
      ...deciders(),
      ['cell', 'rm', name, '--json'],
    ];
    const what = /workspace: an absolute, normalized path.*agentcell cell rm .* --force/;
    assertRefused(file, withField(file, 'workspace', 'relative/elsewhere'), 'STATE_CORRUPT', what, commands);
    const listers = [
      ['cell', 'list', '--json'],
      ['diff', '--json'],
    ];
    assertRefused(file, '{"name": "x", "worksp', 'STATE_CORRUPT', /not valid JSON/, listers);
  });

  it('layers.json: read and write commands refuse, naming the file and field', () => {
    const file = join(dir, 'layers.json');
    const commands = [['cell', 'show', name, '--json'], ['diff', '--json'], ['checkpoint', '--json'], ...deciders()];
    const what = /nextSeq: expected number, got "two"/;
    assertRefused(file, withField(file, 'nextSeq', 'two'), 'STATE_CORRUPT', what, commands);
  });

  it('a receipt: show and list refuse naming it, verify reports it; runs go on being receipted after it', () => {
    const [first] = receiptFiles(dir);
    const receipt = JSON.parse(readFileSync(first!, 'utf8')) as Record<string, unknown>;
    assertRefused(first!, JSON.stringify({ ...receipt, seq: -1 }), 'RECEIPT_INVALID', /seq: expected at least 1/, [
      ['receipt', 'list', '--json'],
      ['receipt', 'show', '1', '--json'],
      ['cell', 'show', name, '--json'],
    ]);
    writeFileSync(first!, '{ truncated');
    try {
      const before = snapshot(sb.root);
      const verify = ac(sb, 'receipt', 'verify', '--json');
      assert.equal(verify.status, 1);
      assert.match(verify.stdout, /not valid JSON/);
      assert.deepEqual(snapshot(sb.root), before, 'verify changed nothing');
    } finally {
      writeFileSync(first!, JSON.stringify(receipt, null, 2) + '\n');
    }
  });

  it('a run journal entry (a run not receipted yet): refused, never skipped, until it is repaired or removed', () => {
    const entry = join(dir, 'runs', 'r-000000000aaaaaaaa.json');
    mkdirSync(join(dir, 'runs'), { recursive: true });
    writeFileSync(entry, '');
    try {
      assertRefused(
        entry,
        '{"version": 1, "id": "r-000000000aaaaaaaa"}',
        'RECEIPT_INVALID',
        /startedAt: expected string, missing/,
        [
          ['receipt', 'list', '--json'],
          ['diff', '--json'],
          ['run', '--json', '--', 'true'],
          ['accept', '--json'],
        ],
      );
    } finally {
      writeFileSync(entry, '');
    }
    const empty = errorOf(ac(sb, 'receipt', 'list', '--json'));
    assert.match(empty.message, /is damaged: empty.*rm /);
    assert.ok(empty.message.includes(entry));
    // The way out the message names works, and nothing else was lost.
    const receipts = receiptFiles(dir).length;
    rmSync(entry);
    assert.equal(acJson<unknown[]>(sb, 'receipt', 'list', '--json').length, receipts);
  });

  it('the chain anchor: verify reports it naming the file; a run still leaves a receipt and the anchor keeps the finding', () => {
    const anchor = anchorPath(join(sb.agentcellHome, 'config'), dir, name);
    const good = JSON.parse(readFileSync(anchor, 'utf8')) as Record<string, unknown>;
    writeFileSync(anchor, JSON.stringify({ ...good, seq: 'many' }));
    const before = snapshot(sb.root);
    const verify = ac(sb, 'receipt', 'verify', '--json');
    assert.equal(verify.status, 1);
    const problems = (JSON.parse(verify.stdout) as { problems: { problem: string }[] }).problems;
    assert.ok(
      problems.some((p) => p.problem.includes(anchor) && /seq: expected number, got "many"/.test(p.problem)),
      JSON.stringify(problems),
    );
    assert.deepEqual(snapshot(sb.root), before, 'verify changed nothing');
    const receipts = receiptFiles(dir).length;
    assert.equal(inCell(sb, 'true').status, 0, 'every run leaves a receipt (invariant 6)');
    assert.equal(receiptFiles(dir).length, receipts + 1);
    const after = JSON.parse(ac(sb, 'receipt', 'verify', '--json').stdout) as { problems: { problem: string }[] };
    assert.ok(
      after.problems.some((p) => /seq: expected number, got "many"/.test(p.problem)),
      'the damage is signed into the new anchor, not forgotten',
    );
  });
});

describe('a cell with damaged state can be removed, as the errors say', () => {
  it('cell rm refuses; cell rm --force removes it', () => {
    const { sb, dir, name } = cellWithHistory();
    try {
      writeFileSync(join(dir, 'cell.json'), '{}');
      writeFileSync(join(dir, 'layers.json'), '[]');
      assert.equal(errorOf(ac(sb, 'cell', 'rm', name, '--json')).code, 'STATE_CORRUPT');
      assert.ok(existsSync(dir));
      const removed = acJson<{ removed: boolean; droppedChanges: number | null }>(
        sb,
        'cell',
        'rm',
        name,
        '--force',
        '--json',
      );
      assert.deepEqual(removed, { ...removed, removed: true, droppedChanges: null });
      assert.equal(existsSync(dir), false);
      assert.equal(inCell(sb, 'true').status, 0, 'the workspace gets a new cell');
    } finally {
      sb.cleanup();
    }
  });
});

describe('a damaged cache', () => {
  it('is rebuilt silently: the run succeeds and rewrites it', () => {
    const { sb } = cellWithHistory();
    try {
      const state = join(sb.agentcellHome, 'state');
      const scanDir = join(state, 'scan-cache');
      const caches = [join(state, 'tool-versions.json'), ...readdirSync(scanDir).map((n) => join(scanDir, n))];
      assert.ok(caches.length >= 2 && caches.every((c) => existsSync(c)), `caches: ${caches.join(', ')}`);
      for (const cache of caches) writeFileSync(cache, '{"dirs": 42');
      const run = inCell(sb, 'echo three > three.txt');
      assert.equal(run.status, 0, run.stderr);
      assert.doesNotMatch(run.stderr, /damaged|STATE_CORRUPT/);
      for (const cache of caches)
        assert.doesNotThrow(() => JSON.parse(readFileSync(cache, 'utf8')), `${cache} rebuilt`);
    } finally {
      sb.cleanup();
    }
  });
});

describe('read-only commands', () => {
  it('leave the state dir as they found it (paths, sizes, modes, mtimes, contents), even with work pending for a writer', async () => {
    const { sb, dir, name } = cellWithHistory();
    try {
      // A run killed mid-way leaves a journal entry, a stale lock and its changes in the upper layer:
      // the next writer receipts it as interrupted; a reader must only show it.
      const killed = await startReadyRun(sb, 'echo three > three.txt');
      killed.kill('SIGKILL');
      await new Promise((resolve) => killed.once('exit', resolve));
      assert.equal(readdirSync(join(dir, 'runs')).filter((n) => n.endsWith('.json')).length, 1);
      // Leftovers of a purge that did not finish: opening the layer stack purges them.
      mkdirSync(join(dir, 'trash', 'leftover'), { recursive: true });
      writeFileSync(join(dir, 'trash', 'leftover', 'file'), 'x');
      const readers = [
        ['cell', 'show', name],
        ['cell', 'show', name, '--json'],
        ['cell', 'list'],
        ['cell', 'list', '--json'],
        ['diff'],
        ['diff', '--json'],
        ['receipt', 'list'],
        ['receipt', 'list', '--json'],
        ['receipt', 'show'],
        ['receipt', 'show', '1', '--format', 'json'],
        ['receipt', 'verify', '--json'],
      ];
      const before = snapshot(sb.agentcellHome);
      for (const args of readers) {
        const r = ac(sb, ...args);
        assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 200)); // a background purge would have begun
        assert.deepEqual(snapshot(sb.agentcellHome), before, `${args.join(' ')} changed the state dir`);
      }
      // Positive control: the snapshot sees what opening the stack (what `cell show` used to do) changes.
      openLayerStack(dir);
      await waitFor('the purge of trash/', () => !existsSync(join(dir, 'trash', 'leftover')), 10_000);
      assert.notDeepEqual(snapshot(sb.agentcellHome), before);
    } finally {
      sb.cleanup();
    }
  });
});
