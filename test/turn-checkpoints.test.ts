import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { layerContentHash } from '../src/workspace/overlay/layer-hash.js';
import { backendArgs, prepareBackend, TEST_BACKENDS } from './backends-under-test.js';
import { makeCerts } from './make-certs.js';
import {
  ac,
  acJson,
  agentcellAsync,
  cellDirOf,
  listen,
  makeSandbox,
  snapshot,
  waitFor,
  type Sandbox,
} from './helpers.js';

/**
 * Turn checkpoints (issue 13): a scripted client in a real cell makes three LLM requests
 * (curl, to a stub of the Anthropic API behind the inspecting gateway) and changes files
 * between them. Each request's start is a turn: `restore --to turn:2` must leave exactly
 * the files written before the second request; the timeline lists the turns in order; a
 * turn checkpoint changed on disk is refused by the verified restore. On every backend
 * in AGENTCELL_TEST_BACKENDS (the upper layer is a host directory on all of them).
 */

interface Receipt {
  id: string;
  checkpoint: { before: string | null; after: string | null };
  turns?: { turn: number; at: string; contentHash: string | null; skipped?: string }[];
}
interface Change {
  path: string;
  change: string;
}
interface RestoreJson {
  dryRun: boolean;
  dropped: { id: string }[];
  changes: { added: number; modified: number; deleted: number };
  turn?: { run: string; turn: number; contentHash: string; changes: Change[]; layer?: { id: string; name?: string } };
}
interface TimelineEvent {
  time: string;
  kind: string;
  turn?: number;
  checkpoint?: string;
  contentHash?: string | null;
}

/** A shell function `req`: one LLM request to the stub, printing its status. */
function requestFunction(port: number): string {
  const request = [
    'curl -sS -o /dev/null -w "%{http_code}\\n"',
    "-H 'content-type: application/json'",
    `--data '{"model":"claude-stub-1","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'`,
    `https://api.anthropic.com:${port}/v1/messages`,
  ].join(' ');
  return `req() { ${request}; }`;
}

/** Three requests, the files changing between them; README.md (a host file) is deleted before the third. */
function turnsScript(port: number, tail = ''): string {
  return [
    'set -e',
    requestFunction(port),
    'echo one > a.txt; req',
    'echo two > b.txt; echo one-changed > a.txt; req',
    'rm a.txt README.md; echo three > c.txt; req',
    'echo four > d.txt',
    ...(tail ? [tail] : []),
  ].join('\n');
}

/** What the run leaves pending at its end (a.txt was made and removed within it). */
const END_STATE = ['added b.txt', 'added c.txt', 'added d.txt', 'deleted README.md'];

/** The cell's layers, turn checkpoints, upper layer and records (not the dir's own mtime, which the lock touches). */
function cellState(cell: string): Map<string, string> {
  return new Map([...snapshot(cell)].filter(([path]) => path !== '.'));
}

const sorted = (changes: Change[]): string[] => changes.map((c) => `${c.change} ${c.path}`).sort();

for (const backend of TEST_BACKENDS) {
  describe(`turn checkpoints on ${backend}`, () => {
    let certDir: string;
    let server: Server;
    let port: number;
    let ca: string;
    let requests = 0;

    before(async () => {
      prepareBackend(backend);
      certDir = mkdtempSync(join(tmpdir(), 'agentcell-turns-'));
      const certs = await makeCerts(certDir, 'stub provider', ['api.anthropic.com']);
      ca = certs.ca;
      server = createServer({ key: certs.key, cert: certs.cert }, (req: IncomingMessage, res: ServerResponse) => {
        req.resume();
        req.on('end', () => {
          requests += 1;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              id: `msg_${requests}`,
              type: 'message',
              role: 'assistant',
              model: 'claude-stub-1',
              content: [{ type: 'text', text: `answer ${requests}` }],
              stop_reason: 'end_turn',
              usage: { input_tokens: 5, output_tokens: 2 },
            }),
          );
        });
      });
      port = await listen(server);
    });
    after(() => {
      server.closeAllConnections();
      server.close();
      rmSync(certDir, { recursive: true, force: true });
    });

    function sandbox(): Sandbox {
      const sb = makeSandbox({ 'README.md': '# a repo\n' });
      writeFileSync(
        join(sb.workspace, 'agentcell.toml'),
        [
          '[network]',
          'mode = "allowlist"',
          'allow = ["api.anthropic.com"]',
          'inspect = ["api.anthropic.com"]',
          'resolve = { "api.anthropic.com" = "127.0.0.1" }',
          `upstream_ca = [${JSON.stringify(ca)}]`,
          '',
        ].join('\n'),
      );
      return sb;
    }

    async function runTurns(sb: Sandbox): Promise<Receipt> {
      const r = await agentcellAsync(sb, ['run', ...backendArgs(backend), '--', 'sh', '-c', turnsScript(port)], {
        timeoutMs: 180_000,
      });
      assert.equal(r.status, 0, `the run failed:\n${r.stdout}\n${r.stderr}`);
      assert.deepEqual(r.stdout.trim().split('\n'), ['200', '200', '200'], 'three requests went through');
      return acJson<Receipt>(sb, 'receipt', 'show', '--format', 'json');
    }

    it('run: a checkpoint per request in the receipt; restore --to turn:2 leaves exactly the files of that point', async () => {
      const sb = sandbox();
      try {
        const receipt = await runTurns(sb);
        const turns = receipt.turns ?? [];
        assert.deepEqual(
          turns.map((t) => t.turn),
          [1, 2, 3],
          JSON.stringify(receipt.turns),
        );
        for (const t of turns) assert.match(t.contentHash ?? '', /^sha256:[0-9a-f]{64}$/, JSON.stringify(t));
        assert.ok(turns[0]!.at <= turns[1]!.at && turns[1]!.at <= turns[2]!.at, 'in the order the requests started');
        assert.equal(new Set(turns.map((t) => t.contentHash)).size, 3, 'each turn saw a different layer');
        assert.ok(ac(sb, 'receipt', 'show').stdout.includes(`restore --to turn:N@${receipt.id}`));

        // --dry-run: says what would be dropped and kept, changes nothing.
        const cell = cellDirOf(sb);
        const beforeDry = cellState(cell);
        const dry = acJson<RestoreJson>(sb, 'restore', '--to', 'turn:2', '--dry-run', '--json');
        assert.equal(dry.dryRun, true);
        assert.deepEqual(
          dry.dropped.map((l) => l.id),
          [receipt.checkpoint.after],
        );
        assert.equal(dry.turn?.turn, 2);
        assert.equal(dry.turn?.contentHash, turns[1]!.contentHash);
        assert.deepEqual(sorted(dry.turn?.changes ?? []), ['added a.txt', 'added b.txt']);
        assert.deepEqual(cellState(cell), beforeDry, '--dry-run changed nothing in the cell');
        assert.deepEqual(
          sorted(acJson<Change[]>(sb, 'diff', '--json')),
          END_STATE,
          'the run’s changes are all pending',
        );

        const restored = acJson<RestoreJson>(sb, 'restore', '--to', 'turn:2', '--json');
        assert.equal(restored.turn?.layer?.name, `turn2.${receipt.id}`);
        assert.deepEqual(sorted(acJson<Change[]>(sb, 'diff', '--json')), ['added a.txt', 'added b.txt']);
        // The run's other turns went with its layer.
        assert.deepEqual(readdirSync(join(cell, 'turns')), []);
        const again = ac(sb, 'restore', '--to', 'turn:3', '--dry-run');
        assert.notEqual(again.status, 0);
        assert.match(again.stderr, /no longer in this cell|no turn 3/);

        ac(sb, 'accept');
        assert.deepEqual(
          readdirSync(sb.workspace)
            .filter((n) => n !== 'agentcell.toml')
            .sort(),
          ['README.md', 'a.txt', 'b.txt'],
        );
        assert.equal(readFileSync(join(sb.workspace, 'a.txt'), 'utf8'), 'one-changed\n');
        assert.equal(readFileSync(join(sb.workspace, 'b.txt'), 'utf8'), 'two\n');
        assert.equal(readFileSync(join(sb.workspace, 'README.md'), 'utf8'), '# a repo\n');
      } finally {
        sb.cleanup();
      }
    });

    it('a request before anything was written: turn 1 is the empty layer, and restoring to it drops every change', async () => {
      const sb = sandbox();
      try {
        const script = ['set -e', requestFunction(port), 'req', 'echo one > a.txt; rm README.md; req'].join('\n');
        const r = await agentcellAsync(sb, ['run', ...backendArgs(backend), '--', 'sh', '-c', script], {
          timeoutMs: 180_000,
        });
        assert.equal(r.status, 0, `the run failed:\n${r.stdout}\n${r.stderr}`);
        const receipt = acJson<Receipt>(sb, 'receipt', 'show', '--format', 'json');
        const turns = receipt.turns ?? [];
        assert.deepEqual(
          turns.map((t) => [t.turn, t.skipped]),
          [
            [1, undefined],
            [2, undefined],
          ],
          JSON.stringify(turns),
        );
        assert.notEqual(turns[0]!.contentHash, turns[1]!.contentHash);
        const restored = acJson<RestoreJson>(sb, 'restore', '--to', 'turn:1', '--json');
        assert.equal(restored.turn?.contentHash, turns[0]!.contentHash);
        assert.deepEqual(restored.turn?.changes, []);
        assert.deepEqual(acJson<Change[]>(sb, 'diff', '--json'), []);
        // The cell sees the workspace as it was: its files, and its root's mode.
        // find, not stat: gVisor answers coreutils' statx on '.' with EINVAL.
        const inCell = ac(
          sb,
          'run',
          ...backendArgs(backend),
          '--',
          'sh',
          '-c',
          'ls; find . -maxdepth 0 -printf "%m\\n"',
        );
        assert.equal(inCell.status, 0, inCell.stderr);
        assert.deepEqual(inCell.stdout.trim().split('\n'), ['README.md', 'agentcell.toml', '755']);
      } finally {
        sb.cleanup();
      }
    });

    it('session: the timeline lists the turns in order; restore is refused while it runs, works after', async () => {
      const sb = sandbox();
      try {
        const started = acJson<{ id: string; run: string | null }>(
          sb,
          'session',
          'start',
          ...backendArgs(backend),
          '--json',
          '--',
          'sh',
          '-c',
          turnsScript(port, 'sleep 300'),
        );
        const timeline = (): TimelineEvent[] =>
          acJson<TimelineEvent[]>(sb, 'session', 'timeline', started.id, '--json');
        // A turn is recorded as its request starts, its LLM record once the answer is back: wait for both.
        await waitFor('three turns and their LLM calls in the timeline', () => {
          const kinds = timeline().map((e) => e.kind);
          return kinds.filter((k) => k === 'turn').length === 3 && kinds.filter((k) => k === 'llm').length === 3;
        });

        const busy = ac(sb, 'restore', '--to', 'turn:2', '--dry-run');
        assert.notEqual(busy.status, 0, 'no turn restore while the run goes on');
        assert.match(busy.stderr, /has not ended/);
        const locked = ac(sb, 'restore', '--to', 'turn:2');
        assert.notEqual(locked.status, 0);

        ac(sb, 'session', 'stop', started.id, '--grace', '1');
        const events = timeline();
        const turns = events.filter((e) => e.kind === 'turn');
        const run = acJson<{ run: string }>(sb, 'session', 'show', started.id, '--json').run;
        assert.deepEqual(
          turns.map((t) => [t.turn, t.checkpoint]),
          [1, 2, 3].map((n) => [n, `turn:${n}@${run}`]),
        );
        // Each turn comes right before the LLM call that opened it, and in time order.
        const kinds = events.map((e) => e.kind);
        for (const t of turns) assert.equal(kinds[events.indexOf(t) + 1], 'llm', kinds.join(' '));
        assert.deepEqual(
          events.map((e) => e.time),
          events.map((e) => e.time).sort(),
        );
        const text = ac(sb, 'session', 'timeline', started.id).stdout;
        assert.match(text, new RegExp(`turn +2 +checkpoint turn:2@${run}`));

        // Turn 3's copy took only what changed since turn 2 (b.txt is linked from it) and holds a whiteout.
        const restored = acJson<RestoreJson>(sb, 'restore', '--to', `turn:3@${run}`, '--json');
        assert.equal(restored.turn?.turn, 3);
        assert.deepEqual(sorted(acJson<Change[]>(sb, 'diff', '--json')), [
          'added b.txt',
          'added c.txt',
          'deleted README.md',
        ]);
        ac(sb, 'accept');
        assert.deepEqual(
          readdirSync(sb.workspace)
            .filter((n) => n !== 'agentcell.toml')
            .sort(),
          ['b.txt', 'c.txt'],
        );
        assert.equal(readFileSync(join(sb.workspace, 'b.txt'), 'utf8'), 'two\n');
      } finally {
        sb.cleanup();
      }
    });

    it('the next run drops the turns of a restored run, reading that run’s receipt only (not the whole chain)', async () => {
      const sb = sandbox();
      try {
        const receipt = await runTurns(sb);
        const cell = cellDirOf(sb);
        assert.deepEqual(readdirSync(join(cell, 'turns')), [receipt.id]);
        ac(sb, 'restore');
        // An old receipt no one can parse: the start of a run must not read it (each run's
        // start once parsed every receipt of the cell here, so its history slowed every run).
        writeFileSync(join(cell, 'receipts', '000000-r-0000000000damaged.json'), '{ not a receipt');
        const next = await agentcellAsync(sb, ['run', ...backendArgs(backend), '--', 'true']);
        assert.equal(next.status, 0, `the run failed:\n${next.stdout}\n${next.stderr}`);
        assert.deepEqual(readdirSync(join(cell, 'turns')), [], 'the restored run’s turns went to the trash');
        // Positive control: the damaged file is there, and what reads the chain still sees it.
        const list = ac(sb, 'receipt', 'list');
        assert.notEqual(list.status, 0);
        assert.match(list.stderr, /000000-r-0000000000damaged\.json \(a receipt\) is damaged/);
      } finally {
        sb.cleanup();
      }
    });

    it('a turn checkpoint changed on disk is refused, even with its record rewritten to match; nothing changes', async () => {
      const sb = sandbox();
      try {
        const receipt = await runTurns(sb);
        const cell = cellDirOf(sb);
        const copy = join(cell, 'turns', receipt.id, '0002');
        writeFileSync(join(copy, 'b.txt'), 'planted\n');
        const before = cellState(cell);
        const refused = ac(sb, 'restore', '--to', 'turn:2');
        assert.notEqual(refused.status, 0);
        assert.match(refused.stderr, /turn:2@.* changed since it was taken/);
        assert.deepEqual(cellState(cell), before, 'a refused restore changes nothing');

        // The record rewritten to the planted content: the signed receipt still holds the real hash.
        const record = join(cell, 'turns', receipt.id, 'turns.json');
        const set = JSON.parse(readFileSync(record, 'utf8')) as { turns: { turn: number; contentHash?: string }[] };
        set.turns[1]!.contentHash = layerContentHash(copy);
        writeFileSync(record, JSON.stringify(set));
        const stillRefused = ac(sb, 'restore', '--to', 'turn:2', '--json');
        assert.notEqual(stillRefused.status, 0);
        assert.match(stillRefused.stdout + stillRefused.stderr, /LAYER_TAMPERED/);
        assert.deepEqual(sorted(acJson<Change[]>(sb, 'diff', '--json')), END_STATE, 'the cell kept the run’s changes');

        // Turn 3 shares the unchanged b.txt with turn 2's copy: refused as well.
        const shared = ac(sb, 'restore', '--to', 'turn:3');
        assert.notEqual(shared.status, 0);
        assert.match(shared.stderr, /turn:3@.* changed since it was taken/);

        // Positive control: an untouched turn of the same run restores.
        const ok = acJson<RestoreJson>(sb, 'restore', '--to', 'turn:1', '--json');
        assert.deepEqual(sorted(ok.turn?.changes ?? []), ['added a.txt']);
      } finally {
        sb.cleanup();
      }
    });
  });
}
