import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createTranscriptWriter, readTranscript } from '../src/sessions/session-transcript.js';
import { terminalText, terminalTextStream } from '../src/sessions/terminal-text.js';
import { findPtyHelper } from '../src/sessions/session-pty.js';

describe('session transcript', () => {
  it('reads back every flush (one gzip member each), hashes the whole stream, drops the oldest past the cap', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-transcript-'));
    try {
      const writer = createTranscriptWriter(dir, 3 * 1024 * 1024);
      const all: Buffer[] = [];
      for (let i = 0; i < 40; i++) {
        // Random bytes do not compress: each flush is about as big stored as written.
        const chunk = createHash('sha512').update(String(i)).digest();
        const big = Buffer.concat(
          Array.from({ length: 2048 }, (_, j) => createHash('sha512').update(`${i}-${j}`).digest()),
        );
        writer.write(chunk);
        writer.write(big);
        all.push(chunk, big);
        writer.flush();
      }
      const whole = Buffer.concat(all);
      assert.deepEqual(writer.summary(), {
        sha256: createHash('sha256').update(whole).digest('hex'),
        bytes: whole.length,
      });
      const stored = readTranscript(dir);
      assert.ok(stored.offset > 0, 'the oldest segments were dropped');
      assert.ok(readdirSync(dir).length >= 2);
      assert.deepEqual(stored.data, whole.subarray(stored.offset), 'what is kept is the stream from its offset on');
      assert.deepEqual(readTranscript(dir, stored.offset + 10).data, whole.subarray(stored.offset, stored.offset + 10));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('plain text: sequences gone, cursor moves as spaces and line breaks, a rewritten line kept, split sequences joined', () => {
    assert.equal(
      terminalText('a\r\nb\r\n\r\n\r\nprogress 1\rprogress 2\r\n\x1b[31mred\x1b[0m x\x1b[3Cy\x1b]0;title\x07z'),
      'a\nb\n\nprogress 1\nprogress 2\nred x   yz',
    );
    const stream = terminalTextStream();
    assert.equal(stream.push('one\x1b[3'), '');
    assert.equal(stream.push('1mtwo\r\n'), 'onetwo\n');
    assert.equal(stream.end(), '');
  });
});

describe('pty helpers', () => {
  for (const name of ['script', 'python3'] as const)
    it(`${name}: the command runs on a terminal of its own, its output relayed, its exit code kept`, () => {
      const helper = findPtyHelper(process.env, name);
      const [command, ...args] = helper.argv(['sh', '-c', 'test -t 0 && test -t 1 && tty; exit 7']);
      const r = spawnSync(command ?? '', args, { encoding: 'utf8', input: '', timeout: 10_000 });
      assert.equal(r.status, 7, r.stderr);
      assert.match(r.stdout, /^\/dev\/pts\/\d+\r?\n/);
      // The positive control: without the helper, the same probe has no terminal.
      assert.equal(spawnSync('sh', ['-c', 'test -t 0 && tty'], { input: '' }).status, 1);
    });
});
