import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { inCell, makeSandbox, startReadyRun, type Sandbox, ac, acJson, cellDirOf, snapshot } from './helpers.js';

/**
 * DESIGN invariant 6 for real: agentcell is SIGKILLed mid-run. The cell dies with it,
 * the host workspace is untouched, the run is receipted as `interrupted` by the next
 * command that changes the cell, the chain verifies, and the cell stays usable with
 * the killed run's writes still pending (neither lost nor applied).
 */

interface ReceiptRow {
  id: string;
  seq: number;
  kind: 'run' | 'decision';
  command: string[];
  status: 'completed' | 'interrupted';
  exitCode: number | null;
  decision: string;
  changes: { added: number; modified: number; deleted: number };
}

interface Change {
  path: string;
  change: string;
  kind: string;
}

const diffPaths = (sb: Sandbox): string[] => acJson<Change[]>(sb, 'diff', '--json').map((c) => `${c.change} ${c.path}`);
const receipts = (sb: Sandbox): ReceiptRow[] => acJson<ReceiptRow[]>(sb, 'receipt', 'list', '--json');

/** Host processes whose command line holds `marker`, as `args` lines. */
function hostProcesses(marker: string): string[] {
  return execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes(marker));
}

function mountsUnder(root: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((line) => line.includes(root));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function makeRemovable(dir: string): void {
  try {
    chmodSync(dir, 0o700);
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) makeRemovable(join(dir, e.name));
  } catch {
    // gone or not ours
  }
}

/**
 * Starts `agentcell run` with a command that writes f, says ready and sleeps; SIGKILLs
 * agentcell once it is ready and checks that the whole cell died with it.
 */
async function killMidRun(sb: Sandbox): Promise<{ pid: number; runId: string }> {
  const marker = `30.${process.pid}${Date.now() % 100000}`;
  const child = await startReadyRun(sb, 'echo x > f', marker);
  // "ready" is printed just before the shell starts the sleep: give it a moment under load.
  let sleeping = hostProcesses(marker).filter((args) => args.startsWith('sleep '));
  for (let i = 0; i < 100 && sleeping.length === 0; i++) {
    await sleep(50);
    sleeping = hostProcesses(marker).filter((args) => args.startsWith('sleep '));
  }
  assert.deepEqual(sleeping, [`sleep ${marker}`], 'positive control: the cell’s sleep is visible from the host');
  const journal = readdirSync(join(cellDirOf(sb), 'runs'));
  assert.equal(journal.length, 1, 'the run is journaled before the command starts');
  const runId = journal[0]!.replace(/\.json$/, '');

  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code: number | null, signal: NodeJS.Signals | null) => resolve(signal)),
  );
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  // bwrap, the shell and the sleep all carry the marker in their command lines.
  let survivors = hostProcesses(marker);
  for (let i = 0; i < 100 && survivors.length > 0; i++) {
    await sleep(50);
    survivors = hostProcesses(marker);
  }
  assert.deepEqual(survivors, [], 'no process of the cell outlives agentcell');
  assert.deepEqual(mountsUnder(sb.root), [], 'no overlay stays mounted on the host');
  return { pid: child.pid!, runId };
}

describe('agentcell killed mid-run (invariant 6)', () => {
  it('the run is finalized as interrupted by the next run; the cell stays usable with the killed run’s writes pending', async () => {
    const sb = makeSandbox({ 'a.txt': 'a\n' });
    try {
      const pristine = snapshot(sb.workspace);
      const { pid, runId } = await killMidRun(sb);
      assert.deepEqual(snapshot(sb.workspace), pristine, 'the host workspace is intact');
      // What the run made on the host's /dev/shm (canary dir, staged files) is named for its pid.
      const shm = `/dev/shm/agentcell-${process.getuid!()}`;
      const leftovers = (): string[] => readdirSync(shm).filter((name) => name.endsWith(`-${pid}`));
      assert.notDeepEqual(leftovers(), [], 'positive control: the killed run left its entries on /dev/shm');
      const dir = cellDirOf(sb);
      assert.equal(readFileSync(join(dir, 'upper', 'f'), 'utf8'), 'x\n', 'the killed run’s write is in the cell');

      // Read-only commands read; they neither finalize nor lose anything, and show the killed run at once.
      assert.deepEqual(diffPaths(sb), ['added f'], 'f is pending: not lost, not applied');
      assert.deepEqual(
        acJson<{ id: string; seq: number | null; status: string; signed: boolean }[]>(
          sb,
          'receipt',
          'list',
          '--json',
        ).map((r) => [r.id, r.seq, r.status, r.signed]),
        [[runId, null, 'interrupted', false]],
      );
      const show = acJson<{ inUseBy: string | null; pendingChanges: number }>(
        sb,
        'cell',
        'show',
        dir.split('/').pop()!,
        '--json',
      );
      assert.equal(show.pendingChanges, 1);
      assert.deepEqual(readdirSync(join(dir, 'runs')), [`${runId}.json`], 'still journaled');
      assert.ok(existsSync(join(dir, 'lock')), 'the dead run’s lock is still there');
      assert.match(readFileSync(join(dir, 'lock'), 'utf8'), new RegExp(`"pid":${pid}\\b`));

      // The next run breaks the stale lock, receipts the killed run and runs.
      const next = inCell(sb, 'cat f; echo y > g');
      assert.equal(next.status, 0, next.stderr);
      assert.equal(next.stdout, 'x\n', 'the next run sees the killed run’s write');
      assert.deepEqual(readdirSync(join(dir, 'runs')), [], 'the journal is empty');
      assert.equal(existsSync(join(dir, 'lock')), false, 'the lock is released');
      assert.deepEqual(leftovers(), [], 'the next run removed the killed run’s entries from /dev/shm');

      const list = receipts(sb);
      assert.deepEqual(
        list.map((r) => [r.seq, r.id === runId, r.kind, r.status, r.exitCode, r.decision]),
        [
          [1, true, 'run', 'interrupted', null, 'pending'],
          [2, false, 'run', 'completed', 0, 'pending'],
        ],
      );
      assert.ok(list[0]!.command.join(' ').includes('echo x > f; echo ready; sleep 30.'));
      const receipt = acJson<{
        id: string;
        status: string;
        exitCode: number | null;
        startedAt: string;
        endedAt: string;
        durationMs: number;
        signature: { alg: string };
      }>(sb, 'receipt', 'show', runId, '--format', 'json');
      assert.equal(receipt.id, runId);
      assert.equal(receipt.status, 'interrupted');
      assert.equal(receipt.exitCode, null);
      assert.equal(receipt.signature.alg, 'ed25519');
      assert.ok(Date.parse(receipt.endedAt) >= Date.parse(receipt.startedAt));
      assert.equal(receipt.durationMs, Date.parse(receipt.endedAt) - Date.parse(receipt.startedAt));
      assert.match(ac(sb, 'receipt', 'show', runId).stdout, /interrupted/);

      const v = acJson<{ ok: boolean; checked: number; problems: unknown[] }>(sb, 'receipt', 'verify', '--json');
      assert.deepEqual(v, { ok: true, checked: 2, problems: [] });
      assert.deepEqual(diffPaths(sb), ['added f', 'added g']);
      assert.deepEqual(snapshot(sb.workspace), pristine);

      // And the cell can be decided as usual: restore drops both runs' writes.
      acJson(sb, 'restore', '--json');
      assert.deepEqual(diffPaths(sb), []);
      assert.equal(inCell(sb, 'test ! -e f && test ! -e g && echo clean').stdout, 'clean\n');
      assert.deepEqual(snapshot(sb.workspace), pristine);
    } finally {
      makeRemovable(sb.root);
      sb.cleanup();
    }
  });

  it('a decision finalizes it too: accept refuses an interrupted run, accept --force applies its writes', async () => {
    const sb = makeSandbox({ 'a.txt': 'a\n' });
    try {
      const pristine = snapshot(sb.workspace);
      const { runId } = await killMidRun(sb);
      const refused = ac(sb, 'accept');
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, new RegExp(`run ${runId} \\(.*\\) was interrupted; .*accept --force or restore`));
      assert.deepEqual(snapshot(sb.workspace), pristine);
      // The refused accept still receipted the run (it took the cell to decide).
      assert.deepEqual(
        receipts(sb).map((r) => [r.id, r.status, r.exitCode, r.decision]),
        [[runId, 'interrupted', null, 'pending']],
      );

      const forced = acJson<{ applied: Change[] }>(sb, 'accept', '--force', '--json');
      assert.deepEqual(
        forced.applied.map((c) => c.path),
        ['f'],
      );
      assert.equal(readFileSync(join(sb.workspace, 'f'), 'utf8'), 'x\n');
      assert.deepEqual(
        receipts(sb).map((r) => [r.kind, r.status, r.decision]),
        [
          ['run', 'interrupted', 'accepted'],
          ['decision', 'completed', 'accepted'],
        ],
      );
      assert.deepEqual(acJson(sb, 'receipt', 'verify', '--json'), { ok: true, checked: 2, problems: [] });
      const again = inCell(sb, 'cat f a.txt');
      assert.equal(again.status, 0, again.stderr);
      assert.equal(again.stdout, 'x\na\n');
    } finally {
      makeRemovable(sb.root);
      sb.cleanup();
    }
  });

  it('the killed run’s writes are receipted as its own, not as the next run’s', async () => {
    const sb = makeSandbox({ 'a.txt': 'a\n' });
    try {
      await killMidRun(sb);
      assert.equal(inCell(sb, 'echo y > g').status, 0);
      const [killed, next] = receipts(sb);
      assert.deepEqual(next?.changes, { added: 1, modified: 0, deleted: 0 });
      assert.deepEqual(killed?.changes, { added: 1, modified: 0, deleted: 0 });
    } finally {
      makeRemovable(sb.root);
      sb.cleanup();
    }
  });

  it('a dead holder’s lock does not block cell rm, nor show the cell as in use', async () => {
    const sb = makeSandbox({ 'a.txt': 'a\n' });
    try {
      await killMidRun(sb);
      const name = cellDirOf(sb).split('/').pop()!;
      assert.equal(acJson<{ locked: boolean }[]>(sb, 'cell', 'list', '--json')[0]?.locked, false);
      const rm = ac(sb, 'cell', 'rm', name, '--force');
      assert.equal(rm.status, 0, rm.stderr);
    } finally {
      makeRemovable(sb.root);
      sb.cleanup();
    }
  });
});
