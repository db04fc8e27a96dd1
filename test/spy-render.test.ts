import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { AgentcellError } from '../src/errors.js';
import { followLiveSpy, followSpyLog, spyLogPath } from '../src/egress/log/spy-files.js';
import { createSpyLog, llmProvider, type LlmProvider, type SpyRecord } from '../src/egress/log/spy-log.js';
import { renderSpyRaw } from '../src/egress/log/spy-raw.js';
import { parseSpyRecord, readSpyLog, renderSpyRecord } from '../src/egress/log/spy-render.js';

/*
 * The spy renderer on the shapes each provider really sends: JSON responses and SSE
 * streams (OpenAI chat deltas with tool-call fragments, Responses events, Gemini SSE),
 * Bedrock Converse, and gzip-encoded bodies written through the spy log itself.
 */

function record(
  provider: LlmProvider,
  path: string,
  request: unknown,
  response: string,
  contentType = 'application/json',
): SpyRecord {
  return {
    time: '2026-11-23T12:00:00.000Z',
    cell: 'c',
    run: 'r',
    host: 'api.test',
    method: 'POST',
    path,
    status: 200,
    provider,
    durationMs: 12,
    request: { contentType: 'application/json', body: JSON.stringify(request), truncated: false },
    response: { contentType, body: response, truncated: false },
  };
}

const sse = (events: unknown[]): string =>
  events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';

describe('spy --raw', () => {
  it('pretty-prints JSON bodies, shows an SSE body as is, and never sends a control character to the terminal', () => {
    const stream = sse([{ type: 'content_block_delta', delta: { type: 'text_delta', text: 'hi' } }]);
    const hostile = `${stream}\u001b]0;owned\u0007\u001b[2J\r\u009b31m`;
    const out = renderSpyRaw(
      record(
        'anthropic',
        '/v1/messages',
        { model: 'm', messages: [{ role: 'user', content: 'a\u001b[31mb' }] },
        hostile,
        'text/event-stream',
      ),
    );
    assert.match(out, /^── 2026-11-23T12:00:00\.000Z anthropic POST api\.test\/v1\/messages → 200 \(12 ms\)\n/);
    assert.match(out, /── request \(application\/json\)\n\{\n {2}"model": "m",/);
    assert.match(out, /── response \(text\/event-stream\)\ndata: \{"type":"content_block_delta"/);
    assert.match(out, /\\u\{1b\}\]0;owned\\u\{7\}\\u\{1b\}\[2J\\u\{d\}\\u\{9b\}31m$/);
    assert.doesNotMatch(out, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    assert.doesNotMatch(renderSpyRecord(record('anthropic', '/v1/messages', { system: '\u001b[2J' }, '{}')), /\u001b/);
  });
});

describe('spy: providers by path', () => {
  it('recognises each API and nothing else', () => {
    assert.equal(llmProvider('/v1/messages'), 'anthropic');
    assert.equal(llmProvider('/v1/chat/completions'), 'openai-chat');
    assert.equal(llmProvider('/openai/deployments/gpt/chat/completions'), 'openai-chat');
    assert.equal(llmProvider('/v1/responses'), 'openai-responses');
    assert.equal(llmProvider('/v1beta/models/gemini-2.5-pro:streamGenerateContent'), 'gemini');
    assert.equal(llmProvider('/model/anthropic.claude-v2/invoke'), 'bedrock');
    assert.equal(llmProvider('/model/m/converse-stream'), 'bedrock');
    assert.equal(llmProvider('/v1/models'), undefined);
    assert.equal(llmProvider('/v1/messages/count_tokens'), undefined);
  });
});

describe('spy: parsing streams and JSON', () => {
  it('OpenAI chat streaming: text deltas, tool-call fragments joined, usage from the last chunk', () => {
    const call = parseSpyRecord(
      record(
        'openai-chat',
        '/v1/chat/completions',
        {
          model: 'gpt-x',
          stream: true,
          messages: [
            { role: 'system', content: 'be brief' },
            { role: 'user', content: [{ type: 'text', text: 'list files' }] },
          ],
          tools: [{ type: 'function', function: { name: 'shell' } }],
        },
        sse([
          { model: 'gpt-x-2026', choices: [{ delta: { role: 'assistant', content: 'Sure' } }] },
          { choices: [{ delta: { content: ', running it.' } }] },
          {
            choices: [{ delta: { tool_calls: [{ index: 0, function: { name: 'shell', arguments: '{"cmd":' } }] } }],
          },
          { choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: '"ls"}' } }] } }] },
          { choices: [], usage: { prompt_tokens: 30, completion_tokens: 12 } },
        ]),
        'text/event-stream; charset=utf-8',
      ),
    );
    assert.equal(call.model, 'gpt-x-2026');
    assert.equal(call.stream, true);
    assert.equal(call.system, 'be brief');
    assert.deepEqual(call.tools, ['shell']);
    assert.deepEqual(call.messages, [{ role: 'user', text: 'list files', toolCalls: [] }]);
    assert.equal(call.output.text, 'Sure, running it.');
    assert.deepEqual(call.output.toolCalls, [{ name: 'shell', input: '{"cmd":"ls"}' }]);
    assert.deepEqual(call.usage, { input: 30, output: 12 });
  });

  it('OpenAI Responses streaming: the completed response wins; history with tool calls and outputs', () => {
    const final = {
      model: 'gpt-r',
      output: [
        { type: 'function_call', name: 'apply_patch', arguments: '{"file":"a.ts"}' },
        { type: 'message', content: [{ type: 'output_text', text: 'Patched.' }] },
      ],
      usage: { input_tokens: 100, output_tokens: 20 },
    };
    const call = parseSpyRecord(
      record(
        'openai-responses',
        '/v1/responses',
        {
          model: 'gpt-r',
          instructions: 'You are Codex.',
          input: [
            { role: 'user', content: [{ type: 'input_text', text: 'fix a.ts' }] },
            { type: 'function_call', name: 'read', arguments: '{"file":"a.ts"}' },
            { type: 'function_call_output', output: 'const a = 1' },
          ],
        },
        [
          'event: response.output_text.delta',
          `data: ${JSON.stringify({ type: 'response.output_text.delta', delta: 'Patched.' })}`,
          '',
          'event: response.completed',
          `data: ${JSON.stringify({ type: 'response.completed', response: final })}`,
          '',
        ].join('\n'),
        'text/event-stream',
      ),
    );
    assert.equal(call.system, 'You are Codex.');
    assert.deepEqual(
      call.messages.map((m) => [m.role, m.text, m.toolCalls.map((t) => t.name)]),
      [
        ['user', 'fix a.ts', []],
        ['assistant', '', ['read']],
        ['tool', '[tool result] const a = 1', []],
      ],
    );
    assert.equal(call.output.text, 'Patched.');
    assert.deepEqual(call.output.toolCalls, [{ name: 'apply_patch', input: '{"file":"a.ts"}' }]);
    assert.deepEqual(call.usage, { input: 100, output: 20 });
  });

  it('Gemini SSE: model from the path, function calls, usage metadata', () => {
    const call = parseSpyRecord(
      record(
        'gemini',
        '/v1beta/models/gemini-test:streamGenerateContent',
        {
          systemInstruction: { parts: [{ text: 'sys' }] },
          contents: [{ role: 'user', parts: [{ text: 'hi' }] }],
          tools: [{ functionDeclarations: [{ name: 'grep' }] }],
        },
        [
          `data: ${JSON.stringify({ candidates: [{ content: { parts: [{ text: 'Hel' }] } }] })}`,
          '',
          `data: ${JSON.stringify({ candidates: [{ content: { parts: [{ text: 'lo' }, { functionCall: { name: 'grep', args: { q: 'x' } } }] } }], usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 3 } })}`,
          '',
        ].join('\n'),
        'text/event-stream',
      ),
    );
    assert.equal(call.model, 'gemini-test');
    assert.equal(call.system, 'sys');
    assert.deepEqual(call.tools, ['grep']);
    assert.equal(call.output.text, 'Hello');
    assert.deepEqual(call.output.toolCalls, [{ name: 'grep', input: '{"q":"x"}' }]);
    assert.deepEqual(call.usage, { input: 5, output: 3 });
  });

  it('Bedrock Converse JSON: tool use and token counts', () => {
    const call = parseSpyRecord(
      record(
        'bedrock',
        '/model/anthropic.claude-3-haiku/converse',
        { system: [{ text: 'sys' }], messages: [{ role: 'user', content: [{ text: 'go' }] }] },
        JSON.stringify({
          output: { message: { content: [{ text: 'ok' }, { toolUse: { name: 'run', input: { a: 1 } } }] } },
          usage: { inputTokens: 9, outputTokens: 4 },
        }),
      ),
    );
    assert.equal(call.model, 'anthropic.claude-3-haiku');
    assert.equal(call.output.text, 'ok');
    assert.deepEqual(call.output.toolCalls, [{ name: 'run', input: '{"a":1}' }]);
    assert.deepEqual(call.usage, { input: 9, output: 4 });
    assert.match(renderSpyRecord(record('bedrock', '/model/m/converse', {}, '{}')), /bedrock m POST/);
  });
});

describe('spy log', () => {
  it('decodes gzip bodies, redacts secret values and key shapes, and follow sees appended calls', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-spy-'));
    try {
      const path = join(dir, 'r.spy.jsonl');
      const log = createSpyLog({ path, cell: 'c', run: 'r', secrets: [{ name: 'KEY', value: 'hunter2-secret' }] });
      await log.open();
      const body = JSON.stringify({
        model: 'claude-x',
        content: [{ type: 'text', text: 'echo hunter2-secret and sk-ant-api03-abcdefghijklmnop' }],
        usage: { input_tokens: 1, output_tokens: 2 },
      });
      log.record({
        time: '2026-11-23T12:00:00.000Z',
        host: 'api.test',
        method: 'POST',
        path: '/v1/messages',
        status: 200,
        provider: 'anthropic',
        durationMs: 5,
        request: {
          contentType: 'application/json',
          body: Buffer.from(JSON.stringify({ model: 'claude-x', messages: [] })),
          truncated: false,
        },
        response: { contentType: 'application/json', contentEncoding: 'gzip', body: gzipSync(body), truncated: false },
      });
      await log.close();
      const [first] = readSpyLog(path);
      assert.ok(first);
      assert.ok(!first.response.body.includes('hunter2-secret'));
      assert.ok(!first.response.body.includes('sk-ant-api03'));
      assert.equal(parseSpyRecord(first).output.text, 'echo [redacted:KEY] and [redacted]');

      const seen: string[] = [];
      const stop = new AbortController();
      const following = followSpyLog(path, (r) => seen.push(r.run), { signal: stop.signal, intervalMs: 20 });
      const later = JSON.stringify({ ...first, run: 'second' });
      appendFileSync(path, later.slice(0, 20)); // a partial line waits for its end
      await new Promise((r) => setTimeout(r, 80));
      assert.deepEqual(seen, ['r']);
      appendFileSync(path, `${later.slice(20)}\n`);
      for (let i = 0; i < 50 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      stop.abort();
      await following;
      assert.deepEqual(seen, ['r', 'second']);
      const damaged = (line: number, why: RegExp) => (error: unknown) =>
        error instanceof AgentcellError &&
        error.code === 'SPY_LOG_INVALID' &&
        error.message.includes(`${path} line ${line} is not a spy record`) &&
        why.test(error.message);
      const good = `${JSON.stringify(first)}\n`;
      const cases: [string, RegExp][] = [
        ['not json', /not valid JSON/],
        ['', /empty/],
        [JSON.stringify({ ...first, provider: 'other' }), /provider: expected "anthropic" or/],
        [
          JSON.stringify({ ...first, response: { ...first.response, body: 7 } }),
          /response\.body: expected string, got 7/,
        ],
        [JSON.stringify({ ...first, headers: {} }), /unknown key "headers"/],
      ];
      for (const [bad, why] of cases) {
        writeFileSync(path, `${good}${bad}\n`);
        assert.throws(() => readSpyLog(path), damaged(2, why), bad);
      }
      writeFileSync(path, `${good}${good.slice(0, 40)}`);
      assert.equal(readSpyLog(path).length, 1, 'a last line without its newline is not read yet');
      const halted = new AbortController();
      const rejected = followSpyLog(path, () => undefined, { signal: halted.signal, intervalMs: 10 });
      appendFileSync(path, '\n');
      await assert.rejects(rejected, damaged(2, /not valid JSON/));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('follow started between runs waits for the next run and shows it, not the ended one; no listener pile-up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentcell-spy-live-'));
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const cellDir = join(dir, 'cell');
      mkdirSync(join(cellDir, 'egress'), { recursive: true });
      const old = 'r-0000000000aaaaaaa';
      const next = 'r-0000000000bbbbbbb';
      const line = (run: string): string =>
        `${JSON.stringify({ ...record('anthropic', '/v1/messages', {}, '{}'), run })}\n`;
      writeFileSync(spyLogPath(cellDir, old), line(old));
      let live: string[] = [];
      const seen: string[] = [];
      const stop = new AbortController();
      const following = followLiveSpy(
        cellDir,
        () => live,
        (r) => seen.push(r.run),
        { signal: stop.signal, intervalMs: 10 },
      );
      // Longer than 11 polls: each poll used to leave an abort listener behind (MaxListenersExceededWarning).
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(seen, [], 'the ended run is not replayed');
      live = [next];
      await new Promise((r) => setTimeout(r, 50));
      appendFileSync(spyLogPath(cellDir, next), line(next));
      for (let i = 0; i < 50 && seen.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
      live = [];
      await new Promise((r) => setTimeout(r, 50));
      stop.abort();
      await following;
      assert.deepEqual(seen, [next]);
      assert.deepEqual(
        warnings.filter((w) => w.name === 'MaxListenersExceededWarning'),
        [],
      );
    } finally {
      process.off('warning', onWarning);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
