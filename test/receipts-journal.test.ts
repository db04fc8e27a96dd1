import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { AgentcellError } from '../src/errors.js';
import { agentcellPaths } from '../src/paths.js';
import { acquireCellLock, cellLockHolder, cellLockPath } from '../src/receipts/cell-lock.js';
import { currentProcess, isProcessAlive, processStartTime } from '../src/_internal/process-identity.js';
import { listReceipts, receiptStore, verifyCell, type ReceiptStore } from '../src/receipts/receipt-store.js';
import {
  beginRun,
  finishRun,
  listJournal,
  recoverInterrupted,
  updateRun,
  type RunDraft,
} from '../src/receipts/run-journal.js';
import { loadOrCreateSigningKey, loadPublicKeys } from '../src/receipts/signing-key.js';

const moduleUrl = (name: string): string => new URL(`../src/receipts/${name}.js`, import.meta.url).href;

function runDraft(): RunDraft {
  return {
    command: ['claude', '-p', 'fix the test'],
    policy: { hash: `sha256:${'b'.repeat(64)}`, mode: 'strict' },
    assurance: { mode: 'strict', level: 'high', reasons: [] },
    backend: { name: 'bwrap', version: '0.9.0' },
    workspace: { path: '/work/repo', mode: 'overlay', gitRef: null, gitDirty: null },
    checkpoint: { before: 'cp-1', after: null },
    changes: { added: 0, modified: 0, deleted: 0 },
    egress: { allowed: 0, denied: 0 },
    mounts: [],
    env: ['PATH'],
    tools: {},
    timings: { prepare: 5 },
  };
}

let root: string;
let config: string;
let cellDir: string;
let store: ReceiptStore;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'agentcell-journal-'));
  const paths = agentcellPaths({ AGENTCELL_HOME: root });
  config = paths.config;
  cellDir = join(paths.state, 'cells', 'web');
  store = receiptStore(cellDir, loadOrCreateSigningKey(config));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** The chain verifies, its end against the anchor too (an interrupted receipt advances it like any). */
function verified(): void {
  const result = verifyCell(cellDir, loadPublicKeys(config), { anchor: store.anchor });
  assert.deepEqual(result.problems, []);
  assert.equal(result.ok, true);
}

/** The pid of a process that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const child = spawn('true');
  await new Promise<void>((resolve, reject) => {
    child.once('exit', () => resolve());
    child.once('error', reject);
  });
  assert.ok(child.pid);
  return child.pid;
}

/** Runs an ES module in a child node process; `ready` resolves with its first stdout line. */
function startNode(source: string): { child: ChildProcess; ready: Promise<string>; exited: Promise<number | null> } {
  const file = join(root, `child-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, source);
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const newline = stdout.indexOf('\n');
      if (newline >= 0) resolve(stdout.slice(0, newline));
    });
    child.once('exit', (code) => reject(new Error(`child exited ${code} before ready: ${stderr}`)));
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      if (code !== 0 && code !== null) console.error(stderr);
      resolve(code);
    }),
  );
  ready.catch(() => undefined);
  return { child, ready, exited };
}

describe('run journal', () => {
  it('begin writes the journal entry before the run; finish receipts it as completed and removes it', async () => {
    const entry = beginRun(cellDir, runDraft());
    assert.equal(entry.owner.pid, process.pid);
    assert.ok(existsSync(join(cellDir, 'runs', `${entry.id}.json`)));
    updateRun(cellDir, entry.id, { checkpoint: { before: 'cp-1', after: 'cp-2' }, timings: { run: 40 } });
    // a live run is left alone
    assert.deepEqual((await recoverInterrupted(store)).recovered, []);
    const receipt = await finishRun(store, entry.id, { exitCode: 7, changes: { added: 2, modified: 0, deleted: 1 } });
    assert.equal(receipt.id, entry.id);
    assert.equal(receipt.status, 'completed');
    assert.equal(receipt.exitCode, 7);
    assert.equal(receipt.kind, 'run');
    assert.equal(receipt.startedAt, entry.startedAt);
    assert.deepEqual(receipt.checkpoint, { before: 'cp-1', after: 'cp-2' });
    assert.deepEqual(receipt.timings, { prepare: 5, run: 40 });
    assert.deepEqual(receipt.changes, { added: 2, modified: 0, deleted: 1 });
    assert.deepEqual(listJournal(cellDir).entries, []);
    await assert.rejects(finishRun(store, entry.id, { exitCode: 0 }), /no journal entry/);
    verified();
  });

  it('recovers a run whose agentcell died as interrupted, and the receipt verifies in the chain', async () => {
    const first = beginRun(cellDir, runDraft());
    await finishRun(store, first.id, { exitCode: 0 });
    const pid = await deadPid();
    const entry = beginRun(cellDir, runDraft(), { owner: { pid, startTime: null, host: hostname() } });
    const { recovered } = await recoverInterrupted(store);
    assert.equal(recovered.length, 1);
    const r = recovered[0]!;
    assert.equal(r.id, entry.id);
    assert.equal(r.seq, 2);
    assert.equal(r.status, 'interrupted');
    assert.equal(r.exitCode, null);
    assert.equal(r.decision, 'pending');
    assert.ok(Date.parse(r.endedAt) >= Date.parse(r.startedAt));
    assert.deepEqual(listJournal(cellDir).entries, []);
    assert.deepEqual((await recoverInterrupted(store)).recovered, []);
    assert.equal((JSON.parse(readFileSync(store.anchor, 'utf8')) as { headId: string }).headId, entry.id);
    verified();
  });

  it('treats a pid now used by another process (different start time) as dead', async () => {
    assert.ok(processStartTime(process.pid), 'this test needs /proc');
    const reused = { ...currentProcess(), startTime: '1' };
    assert.equal(isProcessAlive(currentProcess()), true);
    assert.equal(isProcessAlive(reused), false);
    beginRun(cellDir, runDraft(), { owner: reused });
    assert.equal((await recoverInterrupted(store)).recovered.length, 1);
    verified();
  });

  it('finds a run whose agentcell was killed with SIGKILL mid-run', async () => {
    await finishRun(store, beginRun(cellDir, runDraft()).id, { exitCode: 0 });
    const { child, ready, exited } = startNode(`
      import { beginRun } from ${JSON.stringify(moduleUrl('run-journal'))};
      const entry = beginRun(${JSON.stringify(cellDir)}, ${JSON.stringify(runDraft())});
      console.log(entry.id);
      setInterval(() => {}, 1000);
    `);
    const id = await ready;
    assert.equal((await recoverInterrupted(store)).recovered.length, 0, 'the run is still alive');
    child.kill('SIGKILL');
    assert.equal(await exited, null);
    const { recovered } = await recoverInterrupted(store);
    assert.deepEqual(
      recovered.map((r) => [r.id, r.status, r.exitCode, r.seq]),
      [[id, 'interrupted', null, 2]],
    );
    assert.equal(listReceipts(cellDir).length, 2);
    verified();
  });

  it('recovers each interrupted run exactly once when several processes recover at once', async () => {
    const pid = await deadPid();
    for (let i = 0; i < 5; i++) beginRun(cellDir, runDraft(), { owner: { pid, startTime: null, host: hostname() } });
    const children = [0, 1, 2].map(() =>
      startNode(`
        import { loadOrCreateSigningKey } from ${JSON.stringify(moduleUrl('signing-key'))};
        import { receiptStore } from ${JSON.stringify(moduleUrl('receipt-store'))};
        import { recoverInterrupted } from ${JSON.stringify(moduleUrl('run-journal'))};
        const store = receiptStore(${JSON.stringify(cellDir)}, loadOrCreateSigningKey(${JSON.stringify(config)}));
        const { recovered } = await recoverInterrupted(store);
        console.log(recovered.length);
      `),
    );
    const counts = await Promise.all(children.map((c) => c.ready.then(Number)));
    await Promise.all(children.map((c) => c.exited));
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      5,
    );
    assert.equal(listReceipts(cellDir).length, 5);
    verified();
  });
});

describe('cell lock', () => {
  it('a second acquirer fails at once, naming the holder pid and command; a dead holder is broken', async () => {
    const { child, ready, exited } = startNode(`
      import { acquireCellLock } from ${JSON.stringify(moduleUrl('cell-lock'))};
      await acquireCellLock(${JSON.stringify(cellDir)}, { command: ['agentcell', 'run', '--', 'npm', 'test'] });
      console.log(process.pid);
      setInterval(() => {}, 1000);
    `);
    const pid = Number(await ready);
    assert.equal(cellLockHolder(cellDir)?.pid, pid);
    await assert.rejects(
      acquireCellLock(cellDir),
      (e: unknown) =>
        e instanceof AgentcellError &&
        e.message.includes(`cell "web" is in use by agentcell pid ${pid}`) &&
        e.message.includes('agentcell run -- npm test'),
    );
    child.kill('SIGKILL');
    await exited;
    const release = await acquireCellLock(cellDir, { command: ['agentcell', 'accept'] });
    assert.equal(cellLockHolder(cellDir)?.pid, process.pid);
    assert.deepEqual(cellLockHolder(cellDir)?.command, ['agentcell', 'accept']);
    release();
    release();
    assert.equal(cellLockHolder(cellDir), null);
  });

  it('breaks a stale lock file left by a dead pid, and one left by a reused pid', async () => {
    const pid = await deadPid();
    mkdirSync(cellDir, { recursive: true });
    for (const stale of [
      { pid, startTime: null, host: hostname() },
      { ...currentProcess(), startTime: '1' },
    ]) {
      writeFileSync(
        cellLockPath(cellDir),
        JSON.stringify({ ...stale, command: ['agentcell', 'run'], acquiredAt: 'then', nonce: 'x' }),
      );
      const release = await acquireCellLock(cellDir);
      assert.equal(cellLockHolder(cellDir)?.pid, process.pid);
      release();
    }
    assert.deepEqual(
      readdirSync(cellDir).filter((n) => n.startsWith('lock')),
      [],
    );
  });

  it('waits for the holder to release, or times out naming it', async () => {
    const release = await acquireCellLock(cellDir, { command: ['agentcell', 'shell'] });
    await assert.rejects(acquireCellLock(cellDir, { wait: true, timeoutMs: 150 }), /timed out .* agentcell shell/);
    setTimeout(release, 100);
    const started = Date.now();
    const second = await acquireCellLock(cellDir, { wait: true, timeoutMs: 5_000 });
    assert.ok(Date.now() - started >= 90);
    second();
  });

  it('two processes appending 20 receipts each under the lock never share a seq', async () => {
    const writer = (tag: string): string => `
      import { acquireCellLock } from ${JSON.stringify(moduleUrl('cell-lock'))};
      import { loadOrCreateSigningKey } from ${JSON.stringify(moduleUrl('signing-key'))};
      import { appendReceipt, receiptStore } from ${JSON.stringify(moduleUrl('receipt-store'))};
      const cellDir = ${JSON.stringify(cellDir)};
      const store = receiptStore(cellDir, loadOrCreateSigningKey(${JSON.stringify(config)}));
      const draft = ${JSON.stringify(runDraft())};
      for (let i = 0; i < 20; i++) {
        const release = await acquireCellLock(cellDir, { wait: true, timeoutMs: 30000, command: ['writer', '${tag}'] });
        try {
          const now = new Date().toISOString();
          await appendReceipt(store, { ...draft, kind: 'run', command: ['${tag}', String(i)], exitCode: 0,
            startedAt: now, endedAt: now, durationMs: 0, status: 'completed', decision: 'pending' });
        } finally {
          release();
        }
      }
      console.log('done');
    `;
    await assertConcurrentAppends([writer('a'), writer('b')], 40);
  });

  it('appends from three processes without the cell lock still chain cleanly (the receipt lock)', async () => {
    const writer = (tag: string): string => `
      import { loadOrCreateSigningKey } from ${JSON.stringify(moduleUrl('signing-key'))};
      import { appendReceipt, receiptStore } from ${JSON.stringify(moduleUrl('receipt-store'))};
      const store = receiptStore(${JSON.stringify(cellDir)}, loadOrCreateSigningKey(${JSON.stringify(config)}));
      const draft = ${JSON.stringify(runDraft())};
      for (let i = 0; i < 15; i++) {
        const now = new Date().toISOString();
        await appendReceipt(store, { ...draft, kind: 'run', command: ['${tag}', String(i)], exitCode: 0,
          startedAt: now, endedAt: now, durationMs: 0, status: 'completed', decision: 'pending' });
      }
      console.log('done');
    `;
    await assertConcurrentAppends([writer('a'), writer('b'), writer('c')], 45);
  });
});

async function assertConcurrentAppends(sources: string[], total: number): Promise<void> {
  // A fresh config dir: the writers also race to create the signing key.
  rmSync(join(config, 'keys'), { recursive: true, force: true });
  const children = sources.map(startNode);
  assert.deepEqual(
    await Promise.all(children.map((c) => c.ready)),
    sources.map(() => 'done'),
  );
  assert.deepEqual(
    await Promise.all(children.map((c) => c.exited)),
    sources.map(() => 0),
  );
  const receipts = listReceipts(cellDir);
  assert.equal(receipts.length, total);
  assert.deepEqual(
    receipts.map((r) => r.seq),
    Array.from({ length: total }, (_, i) => i + 1),
  );
  assert.equal(new Set(receipts.map((r) => r.signature.keyId)).size, 1);
  verified();
}
