import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentcellError } from '../src/errors.js';
import type { EgressEvent } from '../src/egress/log/egress-log.js';
import {
  followEgressLog,
  listEgressLogs,
  readEgressLog,
  readEgressLogFrom,
  type EgressLogChunk,
} from '../src/egress/log/egress-log-reader.js';

const event = (host: string, decision: 'allow' | 'deny' = 'allow'): EgressEvent => ({
  time: '2026-01-01T00:00:00.000Z',
  cell: 'c',
  run: 'r-0000000000000000a',
  kind: 'connect',
  host,
  port: 443,
  address: decision === 'allow' ? '127.0.0.1' : null,
  decision,
  rule: decision === 'allow' ? host : null,
  reason: decision === 'allow' ? 'allow-rule' : 'not-allowed',
  bytesUp: 10,
  bytesDown: 20,
  durationMs: 5,
});
const line = (e: EgressEvent): string => `${JSON.stringify(e)}\n`;

describe('egress log reader', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-egress-log-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads complete lines only, leaving a line still being written for the next read', () => {
    const path = join(dir, 'r-0000000000000000a.jsonl');
    const whole = line(event('a.test'));
    const next = line(event('b.test', 'deny'));
    writeFileSync(path, whole + next.slice(0, 25));
    const first = readEgressLogFrom(path);
    assert.deepEqual(
      first.events.map((e) => e.host),
      ['a.test'],
    );
    assert.deepEqual(first.next, { offset: Buffer.byteLength(whole), line: 2 });
    appendFileSync(path, next.slice(25));
    const second = readEgressLogFrom(path, first.next);
    assert.deepEqual(
      second.events.map((e) => [e.host, e.decision]),
      [['b.test', 'deny']],
    );
    assert.equal(second.lines[0], next.trimEnd(), 'the raw line is kept as stored');
    assert.deepEqual(readEgressLogFrom(join(dir, 'missing.jsonl')).events, []);
    writeFileSync(join(dir, 'r-0000000000000000a.spy.jsonl'), ''); // an inspected run's spy log
    assert.deepEqual(listEgressLogs(dir), ['r-0000000000000000a']);
    assert.deepEqual(listEgressLogs(join(dir, 'none')), []);
  });

  const damaged = (path: string, line: number, why: RegExp) => (error: unknown) =>
    error instanceof AgentcellError &&
    error.code === 'EGRESS_LOG_INVALID' &&
    error.message.includes(`${path} line ${line} is not an egress event`) &&
    why.test(error.message);

  it('reads every complete line through the schema: a damaged one is EGRESS_LOG_INVALID naming file, line and fault', () => {
    const path = join(dir, 'bad.jsonl');
    const good = line(event('a.test'));
    const cases: [string, RegExp][] = [
      ['{"time":"x","host":"h","port":"443"}', /time: expected a datetime/],
      [JSON.stringify({ ...event('b.test'), port: '443' }), /port: expected number, got "443"/],
      [JSON.stringify({ ...event('b.test'), decision: 'maybe' }), /decision: expected "allow" or "deny", got "maybe"/],
      [
        JSON.stringify({ ...event('b.test'), reason: 'made-up' }),
        /reason: expected .*"response-encoding", got "made-up"/,
      ],
      [JSON.stringify({ ...event('b.test'), extra: 1 }), /unknown key "extra"/],
      [JSON.stringify({ ...event('b.test'), bytesUp: -1 }), /bytesUp: expected at least 0/],
      [
        JSON.stringify({ ...event('b.test'), wouldBe: { decision: 'deny', reason: 'sni-mismatch', rule: null } }),
        /wouldBe\.reason/,
      ],
      ['[1,2]', /expected object/],
      ['not json', /not valid JSON/],
      ['', /empty/],
    ];
    for (const [bad, why] of cases) {
      writeFileSync(path, `${good}${bad}\n${good}`);
      assert.throws(() => readEgressLog(path), damaged(path, 2, why), bad);
    }
    // Every field the writer may set passes.
    const full: EgressEvent = {
      ...event('c.test'),
      kind: 'request',
      revoked: true,
      inspected: true,
      method: 'GET',
      path: '/x',
      status: 200,
      injected: ['TOKEN'],
      wouldBe: { decision: 'deny', reason: 'not-allowed', rule: null },
    };
    writeFileSync(path, line(full));
    assert.deepEqual(readEgressLog(path).events, [full]);
  });

  it('a line cut mid-character or mid-write is not read until its newline arrives', () => {
    const path = join(dir, 'utf8.jsonl');
    const whole = Buffer.from(line(event('bücher.test')));
    const cut = whole.indexOf(Buffer.from('ü')) + 1; // inside the two bytes of ü
    writeFileSync(path, whole.subarray(0, cut));
    const first = readEgressLogFrom(path);
    assert.deepEqual(first.events, []);
    assert.deepEqual(first.next, { offset: 0, line: 1 });
    appendFileSync(path, whole.subarray(cut));
    assert.deepEqual(
      readEgressLogFrom(path, first.next).events.map((e) => e.host),
      ['bücher.test'],
    );
  });

  it('follow: a last line being written does not fail it; a damaged complete line does, numbered across reads', async () => {
    const path = join(dir, 'live.jsonl');
    const chunks: EgressLogChunk[] = [];
    let running = true;
    writeFileSync(path, line(event('one.test')) + line(event('two.test')));
    const following = followEgressLog(path, { running: () => running, onChunk: (c) => chunks.push(c), pollMs: 10 });
    const ended = following.then(
      () => undefined,
      (error: unknown) => error,
    );
    const next = line(event('three.test'));
    appendFileSync(path, next.slice(0, 30));
    await new Promise((r) => setTimeout(r, 60));
    appendFileSync(path, next.slice(30));
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(
      chunks.flatMap((c) => c.events.map((e) => e.host)),
      ['one.test', 'two.test', 'three.test'],
    );
    appendFileSync(path, '{"host":"x"}\n');
    await new Promise((r) => setTimeout(r, 60));
    running = false; // were the line skipped, following would now end without error
    assert.ok(damaged(path, 4, /time: expected string, missing/)(await ended), 'following failed on the damaged line');
  });

  it('follows a log that does not exist yet until the run ends, and reads what was written last', async () => {
    const path = join(dir, 'later.jsonl');
    const chunks: EgressLogChunk[] = [];
    let running = true;
    const following = followEgressLog(path, { running: () => running, onChunk: (c) => chunks.push(c), pollMs: 10 });
    await new Promise((r) => setTimeout(r, 50));
    writeFileSync(path, line(event('one.test')));
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(
      chunks.flatMap((c) => c.events.map((e) => e.host)),
      ['one.test'],
    );
    // Written just before the run ends: still read.
    appendFileSync(path, line(event('two.test')));
    running = false;
    await following;
    assert.deepEqual(
      chunks.flatMap((c) => c.events.map((e) => e.host)),
      ['one.test', 'two.test'],
    );
  });
});
