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
    const first = readEgressLogFrom(path, 0);
    assert.deepEqual(
      first.events.map((e) => e.host),
      ['a.test'],
    );
    assert.equal(first.offset, Buffer.byteLength(whole));
    appendFileSync(path, next.slice(25));
    const second = readEgressLogFrom(path, first.offset);
    assert.deepEqual(
      second.events.map((e) => [e.host, e.decision]),
      [['b.test', 'deny']],
    );
    assert.equal(second.lines[0], next.trimEnd(), 'the raw line is kept as stored');
    assert.deepEqual(readEgressLogFrom(join(dir, 'missing.jsonl'), 0).events, []);
    writeFileSync(join(dir, 'r-0000000000000000a.spy.jsonl'), ''); // an inspected run's spy log
    assert.deepEqual(listEgressLogs(dir), ['r-0000000000000000a']);
    assert.deepEqual(listEgressLogs(join(dir, 'none')), []);
  });

  it('names the file and the key when a line is not an egress event', () => {
    const path = join(dir, 'bad.jsonl');
    writeFileSync(path, line(event('a.test')) + '{"time":"x","host":"h","port":"443"}\n');
    assert.throws(
      () => readEgressLog(path),
      (error: unknown) =>
        error instanceof AgentcellError &&
        error.code === 'EGRESS_LOG_INVALID' &&
        error.message.includes(path) &&
        error.message.includes('"port" should be a number'),
    );
    writeFileSync(path, 'not json\n');
    assert.throws(() => readEgressLog(path), /not a JSON line/);
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
