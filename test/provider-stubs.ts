import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';

/**
 * Stubs of two provider APIs, written from their public docs, for the agent end-to-end
 * tests: a first request that offers tools gets a tool call that writes `file` with
 * `content`; once the tool's result comes back, a short text answer ends the turn.
 * Each request is recorded with its headers, so a test can see what the gateway injected.
 */
export interface StubRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown> | undefined;
}

export interface ToolCallPlan {
  /** Absolute path (as the cell sees it) of the file the first tool call writes. */
  file: string;
  content: string;
  /** Where the second tool call (a shell command) writes the agent's environment. */
  envDump: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

function recorder(seen: StubRequest[], respond: (r: StubRequest, res: ServerResponse) => void): Handler {
  return (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: Record<string, unknown> | undefined;
      try {
        body = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
      } catch {
        body = undefined;
      }
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      seen.push(request);
      respond(request, res);
    });
  };
}

function sse(res: ServerResponse, events: [string, Record<string, unknown>][]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const [event, data] of events) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  res.end();
}

function notFound(res: ServerResponse, message: string): void {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { type: 'not_found_error', message } }));
}

const modelOf = (body: Record<string, unknown> | undefined, fallback: string): string =>
  typeof body?.['model'] === 'string' ? body['model'] : fallback;

interface OfferedTool {
  name: string;
  input_schema?: { properties?: Record<string, unknown> };
}

const findTool = (body: Record<string, unknown> | undefined, name: RegExp): OfferedTool | undefined =>
  ((body?.['tools'] as OfferedTool[] | undefined) ?? []).find((t) => name.test(t.name));

/** Claude Code's Write takes `file_path`, Pi's write `path`, opencode's `filePath`. */
const pathKey = (tool: OfferedTool): string =>
  ['file_path', 'filePath', 'path'].find((key) => key in (tool.input_schema?.properties ?? {})) ?? 'file_path';

const toolNames = (body: Record<string, unknown> | undefined): string[] =>
  ((body?.['tools'] as { name?: string; type?: string }[] | undefined) ?? []).map((t) => t.name ?? t.type ?? '');

/**
 * Anthropic Messages API (`POST /v1/messages`, SSE when `stream` is true): message_start,
 * content_block_start / content_block_delta (text_delta or input_json_delta) /
 * content_block_stop per block, message_delta with the stop reason, message_stop.
 */
export function anthropicStub(seen: StubRequest[], plan: ToolCallPlan): Handler {
  return recorder(seen, (r, res) => {
    const path = r.url.split('?')[0];
    if (r.method === 'POST' && path === '/v1/messages/count_tokens') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ input_tokens: 12 }));
      return;
    }
    if (r.method !== 'POST' || path !== '/v1/messages') return notFound(res, `no ${r.method} ${path} in this stub`);
    const messages = (r.body?.['messages'] as { content: unknown }[] | undefined) ?? [];
    const results = JSON.stringify(messages).split('"tool_result"').length - 1;
    const model = modelOf(r.body, 'claude-stub');
    const write = findTool(r.body, /^(write|write_file)$/i);
    const bash = findTool(r.body, /^bash$/i);
    const step: { name: string; input: Record<string, unknown> } | undefined =
      !write || !bash
        ? undefined
        : results === 0
          ? { name: write.name, input: { [pathKey(write)]: plan.file, content: plan.content } }
          : results === 1
            ? { name: bash.name, input: { command: `env > ${plan.envDump}`, description: 'Save the environment' } }
            : undefined;
    const block = step
      ? { type: 'tool_use', id: `toolu_stub_${results}`, name: step.name, input: step.input }
      : { type: 'text', text: results > 0 ? 'Wrote the file.' : 'Hello from the stub.' };
    const stopReason = step ? 'tool_use' : 'end_turn';
    const usage = { input_tokens: 21, output_tokens: 7 };
    const id = `msg_stub_${seen.length}`;
    if (r.body?.['stream'] !== true) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id,
          type: 'message',
          role: 'assistant',
          model,
          content: [block],
          stop_reason: stopReason,
          stop_sequence: null,
          usage,
        }),
      );
      return;
    }
    const start = block.type === 'tool_use' ? { ...block, input: {} } : { type: 'text', text: '' };
    const delta =
      block.type === 'tool_use'
        ? { type: 'input_json_delta', partial_json: JSON.stringify(block.input) }
        : { type: 'text_delta', text: block.text };
    sse(res, [
      [
        'message_start',
        {
          type: 'message_start',
          message: {
            id,
            type: 'message',
            role: 'assistant',
            model,
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: usage.input_tokens, output_tokens: 1 },
          },
        },
      ],
      ['content_block_start', { type: 'content_block_start', index: 0, content_block: start }],
      ['ping', { type: 'ping' }],
      ['content_block_delta', { type: 'content_block_delta', index: 0, delta }],
      ['content_block_stop', { type: 'content_block_stop', index: 0 }],
      [
        'message_delta',
        {
          type: 'message_delta',
          delta: { stop_reason: stopReason, stop_sequence: null },
          usage: { output_tokens: usage.output_tokens },
        },
      ],
      ['message_stop', { type: 'message_stop' }],
    ]);
  });
}

/**
 * OpenAI Responses API (`POST /v1/responses`, SSE): response.created, then per output
 * item response.output_item.added / .done (function_call with call_id and JSON
 * arguments, or a message with output_text), then response.completed with usage.
 * Which shell tool Codex offers varies by version, so the call uses the one it offered.
 */
export function openaiResponsesStub(seen: StubRequest[], plan: ToolCallPlan): Handler {
  return recorder(seen, (r, res) => {
    const path = r.url.split('?')[0];
    if (r.method === 'GET' && path === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [] }));
      return;
    }
    if (r.method !== 'POST' || path !== '/v1/responses') return notFound(res, `no ${r.method} ${path} in this stub`);
    const input = JSON.stringify(r.body?.['input'] ?? []);
    const results = input.split('"function_call_output"').length - 1;
    const id = `resp_stub_${seen.length}`;
    const model = modelOf(r.body, 'gpt-stub');
    const quoted = plan.content.replace(/'/g, `'\\''`);
    const script = [`printf '%s' '${quoted}' > '${plan.file}'`, `env > '${plan.envDump}'`][results];
    const item =
      script === undefined ? messageItem('Wrote the file.') : toolCallItem(toolNames(r.body), script, results);
    const response = (status: string, output: unknown[]): Record<string, unknown> => ({
      id,
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      model,
      status,
      output,
      usage:
        status === 'completed'
          ? {
              input_tokens: 30,
              input_tokens_details: { cached_tokens: 0 },
              output_tokens: 9,
              output_tokens_details: { reasoning_tokens: 0 },
              total_tokens: 39,
            }
          : null,
    });
    sse(res, [
      ['response.created', { type: 'response.created', sequence_number: 0, response: response('in_progress', []) }],
      [
        'response.output_item.added',
        {
          type: 'response.output_item.added',
          sequence_number: 1,
          output_index: 0,
          item: { ...item, status: 'in_progress' },
        },
      ],
      ['response.output_item.done', { type: 'response.output_item.done', sequence_number: 2, output_index: 0, item }],
      [
        'response.completed',
        { type: 'response.completed', sequence_number: 3, response: response('completed', [item]) },
      ],
    ]);
  });
}

function messageItem(text: string): Record<string, unknown> {
  return {
    type: 'message',
    id: 'msg_stub_1',
    role: 'assistant',
    status: 'completed',
    content: [{ type: 'output_text', text, annotations: [] }],
  };
}

function toolCallItem(tools: string[], script: string, n: number): Record<string, unknown> {
  const call = (name: string, args: Record<string, unknown>): Record<string, unknown> => ({
    type: 'function_call',
    id: `fc_stub_${n}`,
    call_id: `call_stub_${n}`,
    name,
    arguments: JSON.stringify(args),
    status: 'completed',
  });
  if (tools.includes('shell_command')) return call('shell_command', { command: script });
  if (tools.includes('exec_command')) return call('exec_command', { cmd: script });
  if (tools.includes('shell')) return call('shell', { command: ['bash', '-lc', script] });
  throw new Error(`the Codex request offered no shell tool: ${tools.join(', ')}`);
}

/**
 * Gemini API (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse`): each SSE
 * `data:` line is a GenerateContentResponse (candidates[].content.parts[] with text or
 * functionCall, finishReason, usageMetadata). `:generateContent` answers the CLI's own
 * side questions (which speaker is next) with JSON text.
 */
export function geminiStub(seen: StubRequest[], plan: ToolCallPlan): Handler {
  return recorder(seen, (r, res) => {
    const path = r.url.split('?')[0] ?? '';
    const match = /^\/v1(?:beta)?\/models\/([^/:]+):(streamGenerateContent|generateContent|countTokens)$/.exec(path);
    if (r.method !== 'POST' || !match) return notFound(res, `no ${r.method} ${path} in this stub`);
    const [, model = 'gemini-stub', method] = match;
    const usageMetadata = { promptTokenCount: 25, candidatesTokenCount: 8, totalTokenCount: 33 };
    if (method === 'countTokens') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ totalTokens: 25 }));
      return;
    }
    const candidate = (parts: unknown[]): Record<string, unknown> => ({
      candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP', index: 0 }],
      usageMetadata,
      modelVersion: model,
    });
    if (method === 'generateContent') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(candidate([{ text: JSON.stringify({ reasoning: 'done', next_speaker: 'user' }) }])));
      return;
    }
    const contents = JSON.stringify(r.body?.['contents'] ?? []);
    const results = contents.split('"functionResponse"').length - 1;
    const parts =
      results === 0
        ? [{ functionCall: { name: 'write_file', args: { file_path: plan.file, content: plan.content } } }]
        : results === 1
          ? [{ functionCall: { name: 'run_shell_command', args: { command: `env > ${plan.envDump}` } } }]
          : [{ text: 'Wrote the file.' }];
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(`data: ${JSON.stringify(candidate(parts))}\n\n`);
  });
}
