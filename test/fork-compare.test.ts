import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { ac, acJson, cellDirOf, inCell, makeSandbox, snapshot, type CliResult, type Sandbox } from './helpers.js';
import { backendArgs, prepareBackend, TEST_BACKENDS } from './backends-under-test.js';

/**
 * Issue 14's fork and compare, through the real CLI on real cells: `fork --count` shares
 * the frozen layers (one inode per file) and keeps the siblings independent, `compare`
 * reports what `diff`, the receipts and a real check run say, and `land --drop-siblings`
 * accepts one and removes exactly its siblings, or, refused, nothing. Runs as root and
 * as an unprivileged user.
 */

let sb: Sandbox | undefined;
afterEach(() => {
  sb?.cleanup();
  sb = undefined;
});

const BWRAP = ['--backend', 'bwrap'];

function runOk(box: Sandbox, script: string, extra: string[] = [], code = 0): CliResult {
  const r = inCell(box, script, [...BWRAP, ...extra]);
  assert.equal(r.status, code, `run exited ${String(r.status)}; stderr: ${r.stderr}`);
  return r;
}

interface Change {
  path: string;
  change: 'added' | 'modified' | 'deleted';
  kind: string;
}
interface Patch {
  path: string;
  added: number;
  removed: number;
  binary: boolean;
}
interface ForkJson {
  cells: string[];
  checkpoint: string | null;
  layers: number;
  branch?: string;
  dryRun: boolean;
}
interface Comparison {
  cell: string;
  forkedFrom?: string;
  forkCheckpoint?: string | null;
  files: { added: number; modified: number; deleted: number };
  lines: { added: number; removed: number; binaryFiles: number };
  runs: number;
  lastRun?: { id: string; exitCode: number | null };
  egress: { allowed: number; denied: number };
  check?: { exitCode: number; passed: boolean; ranIn: string; receipt: string; keptReceipts: string | null };
}
interface ReceiptRow {
  id: string;
  kind: 'run' | 'decision';
  decision: string;
  exitCode: number | null;
  command: string[];
}

const diff = (box: Sandbox, cell: string): Change[] => acJson<Change[]>(box, 'diff', '--json', '--cell', cell);
const cellNames = (box: Sandbox): string[] =>
  acJson<{ name: string }[]>(box, 'cell', 'list', '--json')
    .map((c) => c.name)
    .sort();
const receipts = (box: Sandbox, cell: string): ReceiptRow[] =>
  acJson<ReceiptRow[]>(box, 'receipt', 'list', '--json', '--cell', cell);
const layerDirs = (box: Sandbox, cell: string): string[] => readdirSync(join(cellDirOf(box, cell), 'layers')).sort();
const keptDirs = (box: Sandbox): string[] => {
  const dir = join(box.agentcellHome, 'state', 'kept-receipts');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
};
/** The cell state and the workspace, entry by entry (a dry run must change neither). */
const everything = (box: Sandbox): Map<string, string> =>
  new Map([
    ...[...snapshot(join(box.agentcellHome, 'state'))].map(([k, v]) => [`state/${k}`, v] as const),
    ...[...snapshot(box.workspace)].map(([k, v]) => [`work/${k}`, v] as const),
  ]);

/** A workspace whose default cell has one run (one checkpoint), forked into try-1 … try-N. */
function forkedSandbox(count: number): { box: Sandbox; parent: string; fork: ForkJson } {
  const box = makeSandbox({ 'a.txt': 'a\n', 'old.txt': 'x\ny\n' });
  sb = box;
  runOk(box, 'echo base >> a.txt; echo shared > shared.txt');
  const parent = cellDirOf(box).split('/').pop()!;
  const fork = acJson<ForkJson>(box, 'fork', 'try', '--count', String(count), '--json');
  return { box, parent, fork };
}

describe('fork --count (bwrap)', () => {
  it('makes N cells at one checkpoint whose frozen layers share inodes; --dry-run makes nothing', () => {
    const box = makeSandbox({ 'a.txt': 'a\n' });
    sb = box;
    runOk(box, 'echo base >> a.txt; echo shared > shared.txt');
    const parent = cellDirOf(box).split('/').pop()!;
    const before = everything(box);
    const dry = acJson<ForkJson>(box, 'fork', 'try', '--count', '3', '--dry-run', '--json');
    assert.deepEqual(dry.cells, ['try-1', 'try-2', 'try-3']);
    assert.equal(dry.dryRun, true);
    assert.deepEqual(everything(box), before, '--dry-run changed something');

    const fork = acJson<ForkJson>(box, 'fork', 'try', '--count', '3', '--json');
    assert.deepEqual([fork.cells, fork.layers, fork.dryRun], [['try-1', 'try-2', 'try-3'], 1, false]);
    const [layer] = layerDirs(box, parent);
    assert.ok(
      layer?.endsWith(`-${fork.checkpoint}`),
      `checkpoint ${String(fork.checkpoint)} is the parent's top layer`,
    );
    const inode = (cell: string): { ino: number; nlink: number } =>
      lstatSync(join(cellDirOf(box, cell), 'layers', layer!, 'shared.txt'));
    const parentFile = inode(parent);
    assert.equal(parentFile.nlink, 4, 'one inode, linked from the parent and its three forks');
    for (const cell of fork.cells) {
      assert.deepEqual(layerDirs(box, cell), [layer]);
      assert.equal(inode(cell).ino, parentFile.ino, `${cell} shares the parent's layer file`);
      const show = acJson<{ forkedFrom: string; forkPoint: { checkpoint: string }; siblings: string[] }>(
        box,
        'cell',
        'show',
        cell,
        '--json',
      );
      assert.equal(show.forkedFrom, parent);
      assert.deepEqual(show.forkPoint, { checkpoint: fork.checkpoint });
      assert.deepEqual(
        show.siblings,
        fork.cells.filter((c) => c !== cell),
      );
    }
    const again = ac(box, 'fork', 'try', '--count', '2');
    assert.equal(again.status, 2, 'try-1 exists: refused');
    assert.match(again.stderr, /cell try-1 already exists/);
    assert.deepEqual(cellNames(box), [parent, ...fork.cells].sort(), 'a refused fork made no cell');
    assert.equal(ac(box, 'fork', 'x', '--count', '0').status, 2);
  });

  it('siblings are independent; one restored and one removed leave the others’ shared layers verified', () => {
    const { box, parent, fork } = forkedSandbox(3);
    const [layer] = layerDirs(box, parent);
    runOk(box, 'echo one > one.txt; echo t1 >> a.txt; echo rewritten > shared.txt', ['--cell', 'try-1']);
    assert.equal(
      runOk(box, 'cat a.txt shared.txt; test ! -e one.txt && echo no-one', ['--cell', 'try-2']).stdout,
      'a\nbase\nshared\nno-one\n',
      "try-1's run is not seen in try-2",
    );
    assert.deepEqual(
      diff(box, 'try-3').map((c) => c.path),
      ['a.txt', 'shared.txt'],
    );
    const shared = join(cellDirOf(box, 'try-2'), 'layers', layer!, 'shared.txt');
    assert.equal(readFileSync(shared, 'utf8'), 'shared\n', 'the shared layer file is as frozen');

    // One sibling drops every layer, another is removed, the trash is purged: the rest keep theirs.
    assert.equal(ac(box, 'restore', '--cell', 'try-1').status, 0);
    assert.equal(ac(box, 'cell', 'rm', '--force', 'try-3').status, 0);
    assert.equal(ac(box, 'gc').status, 0);
    assert.equal(readFileSync(shared, 'utf8'), 'shared\n');
    // Verified restore (layer hashes): keeping the shared checkpoint checks its content.
    const kept = ac(box, 'restore', '--cell', 'try-2', '--to', fork.checkpoint!);
    assert.equal(kept.status, 0, kept.stderr);
    assert.deepEqual(
      diff(box, 'try-2').map((c) => c.path),
      ['a.txt', 'shared.txt'],
    );
    assert.deepEqual(
      diff(box, parent).map((c) => c.path),
      ['a.txt', 'shared.txt'],
    );

    // Positive control: the check sees a write to the shared inode, in every cell that links it.
    writeFileSync(shared, 'tampered\n');
    for (const cell of [parent, 'try-2']) {
      const refused = ac(box, 'restore', '--cell', cell, '--to', fork.checkpoint!);
      assert.notEqual(refused.status, 0, `${cell}: a tampered shared layer is refused`);
      assert.match(refused.stderr, /changed since it was frozen/);
    }
  });
});

describe('compare (bwrap)', () => {
  it('reports what diff, the receipts and a real check say; the check runs in a fork and leaves the candidate as it was', () => {
    const { box, parent } = forkedSandbox(2);
    writeFileSync(
      join(box.workspace, 'agentcell.toml'),
      '[network]\nmode = "allowlist"\nallow = ["allowed.invalid"]\n',
    );
    runOk(box, 'printf "1\\n2\\n3\\n" > new.txt; rm old.txt', ['--cell', 'try-1']);
    // A denied request (no host is allowed but one), then a failing exit.
    runOk(box, 'curl -s -o /dev/null http://denied.invalid/; echo two >> a.txt; exit 3', ['--cell', 'try-2'], 3);

    const rows = acJson<Comparison[]>(box, 'compare', 'try-1', 'try-2', parent, '--json');
    assert.deepEqual(
      rows.map((r) => r.cell),
      ['try-1', 'try-2', parent],
    );
    for (const row of rows) {
      const changes = diff(box, row.cell).filter((c) => c.kind !== 'dir');
      const count = (kind: Change['change']): number => changes.filter((c) => c.change === kind).length;
      assert.deepEqual(row.files, { added: count('added'), modified: count('modified'), deleted: count('deleted') });
      const patches = acJson<Patch[]>(box, 'diff', '--patch', '--json', '--cell', row.cell);
      assert.deepEqual(row.lines, {
        added: patches.reduce((n, p) => n + p.added, 0),
        removed: patches.reduce((n, p) => n + p.removed, 0),
        binaryFiles: patches.filter((p) => p.binary).length,
      });
      const runs = receipts(box, row.cell).filter((r) => r.kind === 'run');
      const egress = runs
        .map(
          (r) =>
            acJson<{ egress: { allowed: number; denied: number } }>(
              box,
              'receipt',
              'show',
              r.id,
              '--format',
              'json',
              '--cell',
              row.cell,
            ).egress,
        )
        .reduce((t, e) => ({ allowed: t.allowed + e.allowed, denied: t.denied + e.denied }), { allowed: 0, denied: 0 });
      assert.deepEqual(row.egress, egress);
      assert.equal(row.lastRun?.id, runs.at(-1)?.id);
    }
    const [one, two, source] = rows as [Comparison, Comparison, Comparison];
    assert.deepEqual(one.files, { added: 2, modified: 1, deleted: 1 }, 'new.txt, shared.txt; a.txt; old.txt');
    assert.deepEqual(one.lines, { added: 5, removed: 2, binaryFiles: 0 });
    assert.equal(one.lastRun?.exitCode, 0);
    assert.equal(two.lastRun?.exitCode, 3);
    assert.ok(two.egress.denied >= 1, `the denied request is counted: ${JSON.stringify(two.egress)}`);
    assert.equal(source.forkedFrom, undefined);
    assert.equal(one.forkedFrom, parent);

    // The human table carries the same numbers.
    const table = ac(box, 'compare', 'try-1', 'try-2');
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /files \+\/~\/-\s+2\/1\/1\s+1\/1\/0/);
    assert.match(table.stdout, /last exit\s+0\s+3/);

    // --dry-run runs no check and writes nothing.
    const before = everything(box);
    const dry = acJson<Comparison[]>(box, 'compare', 'try-1', 'try-2', '--check', 'true', '--dry-run', '--json');
    assert.ok(dry.every((r) => r.check === undefined));
    assert.deepEqual(everything(box), before);

    // The check: a real run in a fork of each candidate, which writes a file.
    const candidates = ['try-1', 'try-2'].map((cell) => ({
      cell,
      diff: diff(box, cell),
      receipts: receipts(box, cell),
    }));
    const checked = acJson<Comparison[]>(
      box,
      'compare',
      'try-1',
      'try-2',
      '--check',
      'echo checked > check-marker; test -e new.txt',
      '--json',
    );
    assert.deepEqual(
      checked.map((r) => [r.cell, r.check?.passed, r.check?.exitCode]),
      [
        ['try-1', true, 0],
        ['try-2', false, 1],
      ],
    );
    for (const [i, c] of candidates.entries()) {
      const check = checked[i]!.check!;
      assert.deepEqual(diff(box, c.cell), c.diff, `${c.cell}: the check's writes are not the candidate's`);
      const after = receipts(box, c.cell);
      const runsOf = (list: ReceiptRow[]): [string, string, number | null][] =>
        list.map((r) => [r.id, r.kind, r.exitCode]);
      assert.deepEqual(runsOf(after.slice(0, c.receipts.length)), runsOf(c.receipts));
      assert.deepEqual(
        after.slice(c.receipts.length).map((r) => [r.kind, r.decision]),
        [['decision', 'forked']],
        'the candidate records the fork, and no run',
      );
      assert.ok(!cellNames(box).includes(check.ranIn), 'the check cell is gone');
      // Its receipts were kept, the check run among them with its exit code.
      const kept = join(check.keptReceipts!, 'receipts');
      const run = readdirSync(kept)
        .map((f) => JSON.parse(readFileSync(join(kept, f), 'utf8')) as ReceiptRow)
        .find((r) => r.id === check.receipt);
      assert.equal(run?.kind, 'run');
      assert.equal(run?.exitCode, check.exitCode);
    }
    // Accept still sees try-1's own (successful) last run, not a check's.
    assert.equal(ac(box, 'accept', '--cell', 'try-1', '--dry-run').status, 0);
  });
});

describe('land --drop-siblings (bwrap)', () => {
  it('accepts one and removes exactly its siblings (receipts kept); refused or dry, it drops nothing', () => {
    const box = makeSandbox({ 'a.txt': 'a\n' });
    sb = box;
    runOk(box, 'echo base > base.txt');
    const parent = cellDirOf(box).split('/').pop()!;
    // Forks that are not siblings of try-N: another checkpoint of the parent, and another cell.
    assert.equal(ac(box, 'fork', 'early').status, 0);
    runOk(box, 'echo second > second.txt');
    runOk(box, 'echo by > by.txt', ['--cell', 'bystander']);
    const fork = acJson<ForkJson>(box, 'fork', 'try', '--count', '3', '--json');
    assert.deepEqual(fork.cells, ['try-1', 'try-2', 'try-3']);
    runOk(box, 'echo one > one.txt', ['--cell', 'try-1']);
    runOk(box, 'echo two >> a.txt', ['--cell', 'try-2']);
    runOk(box, 'echo three >> a.txt', ['--cell', 'try-3']);
    const all = [parent, 'bystander', 'early', 'try-1', 'try-2', 'try-3'].sort();
    assert.deepEqual(cellNames(box), all);

    // A host edit to a.txt after the runs: landing try-2 is refused, and nothing is dropped.
    writeFileSync(join(box.workspace, 'a.txt'), 'a\nhost\n');
    const before = everything(box);
    const refused = ac(box, 'land', 'try-2', '--drop-siblings');
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /a\.txt/);
    assert.deepEqual(cellNames(box), all, 'a refused land drops no sibling');
    // The accept's lock came and went (its directory's mtime): every entry else is as it was.
    const noDirTimes = (m: Map<string, string>): string[] =>
      [...m].map(([k, v]) => `${k} ${v.startsWith('40') ? v.split(' ')[0]! : v}`);
    assert.deepEqual(noDirTimes(everything(box)), noDirTimes(before), 'a refused land changes nothing');

    const beforeDry = everything(box);
    const dry = acJson<{ dryRun: boolean; dropped: { cell: string }[]; accepted: { applied: { path: string }[] } }>(
      box,
      'land',
      'try-1',
      '--drop-siblings',
      '--dry-run',
      '--json',
    );
    assert.equal(dry.dryRun, true);
    assert.deepEqual(
      dry.dropped.map((d) => d.cell),
      ['try-2', 'try-3'],
    );
    assert.deepEqual(everything(box), beforeDry, '--dry-run changes nothing');

    const landed = acJson<{
      accepted: { applied: { path: string }[]; receipt: { decision: string } };
      dropped: { cell: string; removed: boolean; keptReceipts: string }[];
    }>(box, 'land', 'try-1', '--drop-siblings', '--json');
    assert.deepEqual(landed.accepted.applied.map((c) => c.path).sort(), ['base.txt', 'one.txt', 'second.txt']);
    assert.equal(landed.accepted.receipt.decision, 'accepted');
    assert.deepEqual(
      landed.dropped.map((d) => [d.cell, d.removed]),
      [
        ['try-2', true],
        ['try-3', true],
      ],
    );
    assert.deepEqual(cellNames(box), [parent, 'bystander', 'early', 'try-1'].sort(), 'exactly the siblings went');
    assert.equal(readFileSync(join(box.workspace, 'one.txt'), 'utf8'), 'one\n');
    assert.equal(readFileSync(join(box.workspace, 'a.txt'), 'utf8'), 'a\nhost\n', "the host's edit stays");
    for (const d of landed.dropped) {
      const kept = readdirSync(join(d.keptReceipts, 'receipts'));
      assert.equal(kept.length, 1, `${d.cell}: its run's receipt is kept`);
      const verified = spawnSync('ls', [d.keptReceipts], { encoding: 'utf8' }).stdout;
      assert.match(verified, /cell\.json/);
    }
    assert.deepEqual(keptDirs(box).length, 2);
    // Not a fork: nothing to drop, said so.
    const notFork = ac(box, 'land', 'bystander', '--drop-siblings');
    assert.equal(notFork.status, 2);
    assert.match(notFork.stderr, /not a fork/);
  });
});

describe('missing cells', () => {
  it('compare and land of a cell that does not exist: CELL_NOT_FOUND, exit 2, nothing made', () => {
    const box = makeSandbox();
    sb = box;
    for (const args of [
      ['compare', 'nosuch'],
      ['land', 'nosuch', '--drop-siblings'],
      ['compare', 'nosuch', '--check', 'true'],
    ]) {
      const r = ac(box, ...args, '--json');
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'CELL_NOT_FOUND');
      assert.ok(!existsSync(join(box.agentcellHome, 'state', 'cells', 'nosuch')));
    }
  });
});

describe('fork and land a branch cell (bwrap)', () => {
  it('each fork is a candidate for the branch; the landed one becomes the branch, the host checkout untouched', () => {
    const box = makeSandbox({ 'README.md': 'hello\n' });
    sb = box;
    const git = (...args: string[]): string => {
      const r = spawnSync('git', ['-c', 'user.name=h', '-c', 'user.email=h@example.invalid', ...args], {
        cwd: box.workspace,
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    git('init', '-q', '-b', 'main');
    git('add', '.');
    git('commit', '-q', '-m', 'initial');
    const head = git('rev-parse', 'HEAD');
    const commit = (msg: string): string => `echo ${msg} > f; git add f; git commit -q -m ${msg}`;
    assert.equal(inCell(box, commit('start'), [...BWRAP, '--branch', 'feat']).status, 0);
    const fork = acJson<ForkJson>(box, 'fork', 'cand', '--count', '2', '--cell', 'feat', '--json');
    assert.equal(fork.branch, 'feat');
    for (const cell of fork.cells)
      assert.equal(
        ac(box, 'run', ...BWRAP, '--branch', 'feat', '--cell', cell, '--', 'sh', '-c', commit(cell)).status,
        0,
      );
    const landed = acJson<{ accepted: { landed: { branch: string; commit: string } } }>(
      box,
      'land',
      'cand-2',
      '--drop-siblings',
      '--json',
    );
    assert.equal(landed.accepted.landed.branch, 'feat');
    assert.equal(git('log', '-1', '--format=%s', 'feat'), 'cand-2');
    assert.equal(git('log', '-1', '--format=%s', 'feat~1'), 'start');
    assert.equal(git('rev-parse', 'HEAD'), head, "the host's HEAD did not move");
    assert.equal(git('symbolic-ref', 'HEAD'), 'refs/heads/main');
    assert.ok(!cellNames(box).includes('cand-1'));
  });
});

describe('fork --count on every backend under test', () => {
  for (const backend of TEST_BACKENDS)
    it(`${backend}: forks run independently on the shared layers`, () => {
      prepareBackend(backend);
      const box = makeSandbox({ 'a.txt': 'a\n' });
      sb = box;
      const run = (script: string, cell?: string): CliResult =>
        inCell(box, script, [...backendArgs(backend), ...(cell ? ['--cell', cell] : [])]);
      assert.equal(run('echo base >> a.txt').status, 0);
      const fork = acJson<ForkJson>(box, 'fork', 'try', '--count', '2', '--json');
      assert.deepEqual(fork.cells, ['try-1', 'try-2']);
      const w = run('echo one > one.txt', 'try-1');
      assert.equal(w.status, 0, w.stderr);
      const r = run('cat a.txt; test ! -e one.txt && echo independent', 'try-2');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'a\nbase\nindependent\n');
    });
});
