import { readJsonlFrom } from './jsonl-log.js';
import { SPY_LINE } from './spy-files.js';
import type { LlmProvider, SpyRecord } from './spy-log.js';
import { terminalSafe } from './spy-raw.js';

export interface ToolCall {
  name: string;
  input: string;
}

export interface LlmMessage {
  role: string;
  text: string;
  toolCalls: ToolCall[];
}

/** One LLM API call, provider-neutral: what `agentcell spy` shows. */
export interface LlmCall {
  time: string;
  provider: LlmProvider;
  host: string;
  path: string;
  status: number;
  durationMs: number;
  model: string | undefined;
  stream: boolean;
  system: string | undefined;
  /** The conversation sent. */
  messages: LlmMessage[];
  /** Tool names offered. */
  tools: string[];
  /** What came back. */
  output: { text: string; toolCalls: ToolCall[] };
  usage: { input?: number; output?: number };
  truncated: boolean;
}

type Json = Record<string, unknown>;

/**
 * Reads a spy log's complete lines, checked (jsonl-log.ts): a last line without its
 * newline is not read yet, a damaged one is SPY_LOG_INVALID naming it.
 */
export function readSpyLog(path: string): SpyRecord[] {
  return readJsonlFrom(path, SPY_LINE).values;
}

/** The provider-neutral reading of one record (request, and response JSON or SSE stream). */
export function parseSpyRecord(record: SpyRecord): LlmCall {
  const request = parseJson(record.request.body);
  const body = parseJsonValue(record.response.body);
  // A stream is SSE, Bedrock's event stream, or (Gemini without alt=sse) one JSON array of chunks.
  const events = streamEvents(record.response) ?? (Array.isArray(body) ? list(body) : undefined);
  const response = events ? undefined : obj(body);
  const call: LlmCall = {
    time: record.time,
    provider: record.provider,
    host: record.host,
    path: record.path,
    status: record.status,
    durationMs: record.durationMs,
    model: str(request?.['model']),
    stream: events !== undefined,
    system: undefined,
    messages: [],
    tools: [],
    output: { text: '', toolCalls: [] },
    usage: {},
    truncated: record.request.truncated || record.response.truncated,
  };
  switch (record.provider) {
    case 'anthropic':
      readAnthropic(call, request, response, events);
      break;
    case 'openai-chat':
      readOpenAiChat(call, request, response, events);
      break;
    case 'openai-responses':
      readOpenAiResponses(call, request, response, events);
      break;
    case 'gemini':
      readGemini(call, request, response, events, record.path);
      break;
    case 'bedrock':
      readBedrock(call, request, response, events, record.path);
      break;
  }
  return call;
}

/** A readable block for one call: header, system, messages, what came back, tokens. */
export function renderSpyRecord(record: SpyRecord, options: { width?: number } = {}): string {
  const call = parseSpyRecord(record);
  const width = options.width ?? 400;
  const cut = (text: string): string => {
    const flat = text.replace(/\s+/g, ' ').trim();
    return flat.length > width ? `${flat.slice(0, width)}…` : flat;
  };
  const lines = [
    `── ${call.time} ${call.provider} ${call.model ?? '(model?)'} ${record.method} ${call.host}${call.path} → ${call.status} (${call.durationMs} ms${call.stream ? ', streamed' : ''}${call.truncated ? ', truncated' : ''})`,
  ];
  if (call.system) lines.push(`  system: ${cut(call.system)}`);
  if (call.tools.length > 0) lines.push(`  tools: ${call.tools.join(', ')}`);
  for (const message of call.messages) {
    if (message.text) lines.push(`  ${message.role}: ${cut(message.text)}`);
    for (const tool of message.toolCalls) lines.push(`  ${message.role}: tool call ${tool.name} ${cut(tool.input)}`);
  }
  if (call.output.text) lines.push(`  → assistant: ${cut(call.output.text)}`);
  for (const tool of call.output.toolCalls) lines.push(`  → assistant: tool call ${tool.name} ${cut(tool.input)}`);
  const tokens = [
    call.usage.input !== undefined ? `in ${call.usage.input}` : undefined,
    call.usage.output !== undefined ? `out ${call.usage.output}` : undefined,
  ].filter(Boolean);
  if (tokens.length > 0) lines.push(`  tokens: ${tokens.join(', ')}`);
  return terminalSafe(lines.join('\n'));
}

/** `data:` payloads of a server-sent-event stream (or Bedrock's decoded event lines), as JSON. */
function streamEvents(response: SpyRecord['response']): Json[] | undefined {
  const type = response.contentType.toLowerCase();
  const lines = response.body.split(/\r?\n/);
  if (type.includes('text/event-stream'))
    return lines
      .filter((line) => line.startsWith('data:'))
      .map((line) => parseJson(line.slice(5).trim()))
      .filter((event): event is Json => event !== undefined);
  if (type.includes('eventstream'))
    return lines.map((line) => unwrapBedrockChunk(parseJson(line))).filter((e): e is Json => e !== undefined);
  return undefined;
}

function readAnthropic(call: LlmCall, request: Json | undefined, response: Json | undefined, events?: Json[]): void {
  call.system = textOf(request?.['system']);
  call.tools = list(request?.['tools']).map((t) => str(t['name']) ?? '?');
  for (const message of list(request?.['messages'])) call.messages.push(anthropicMessage(message));
  if (response) {
    call.model = str(response['model']) ?? call.model;
    const output = anthropicMessage({ role: 'assistant', content: response['content'] });
    call.output = { text: output.text, toolCalls: output.toolCalls };
    readAnthropicUsage(call, obj(response['usage']));
  }
  if (!events) return;
  const blocks: { type: string; text: string; name: string; input: string }[] = [];
  for (const event of events) {
    const type = str(event['type']);
    if (type === 'message_start') {
      const message = obj(event['message']);
      call.model = str(message?.['model']) ?? call.model;
      readAnthropicUsage(call, obj(message?.['usage']));
    } else if (type === 'content_block_start') {
      const block = obj(event['content_block']) ?? {};
      const input = block['input'];
      const hasInput = input !== undefined && JSON.stringify(input) !== '{}';
      blocks.push({
        type: str(block['type']) ?? '',
        text: str(block['text']) ?? '',
        name: str(block['name']) ?? '',
        input: hasInput ? JSON.stringify(input) : '',
      });
    } else if (type === 'content_block_delta') {
      const delta = obj(event['delta']) ?? {};
      const block = blocks[blocks.length - 1];
      if (!block) continue;
      block.text += str(delta['text']) ?? '';
      block.input += str(delta['partial_json']) ?? '';
    } else if (type === 'message_delta') readAnthropicUsage(call, obj(event['usage']));
  }
  call.output = {
    text: blocks
      .filter((b) => b.type === 'text')
      .map((b) => b.text)
      .join(''),
    toolCalls: blocks.filter((b) => b.type === 'tool_use').map((b) => ({ name: b.name, input: b.input || '{}' })),
  };
}

function anthropicMessage(message: Json): LlmMessage {
  const role = str(message['role']) ?? '?';
  const content = message['content'];
  if (typeof content === 'string') return { role, text: content, toolCalls: [] };
  const texts: string[] = [];
  const toolCalls: ToolCall[] = [];
  for (const block of list(content)) {
    const type = str(block['type']);
    if (type === 'text') texts.push(str(block['text']) ?? '');
    else if (type === 'tool_use')
      toolCalls.push({ name: str(block['name']) ?? '?', input: JSON.stringify(block['input'] ?? {}) });
    else if (type === 'tool_result') texts.push(`[tool result] ${textOf(block['content']) ?? ''}`);
  }
  return { role, text: texts.join('\n'), toolCalls };
}

function readAnthropicUsage(call: LlmCall, usage: Json | undefined): void {
  const input = num(usage?.['input_tokens']);
  const output = num(usage?.['output_tokens']);
  if (input !== undefined) call.usage.input = input;
  if (output !== undefined) call.usage.output = output;
}

function readOpenAiChat(call: LlmCall, request: Json | undefined, response: Json | undefined, events?: Json[]): void {
  call.tools = list(request?.['tools']).map((t) => str(obj(t['function'])?.['name']) ?? str(t['name']) ?? '?');
  for (const message of list(request?.['messages'])) {
    const role = str(message['role']) ?? '?';
    if (role === 'system' || role === 'developer') {
      call.system = [call.system, textOf(message['content'])].filter(Boolean).join('\n');
      continue;
    }
    call.messages.push({ role, text: textOf(message['content']) ?? '', toolCalls: openAiToolCalls(message) });
  }
  if (response) {
    call.model = str(response['model']) ?? call.model;
    const message = obj(list(response['choices'])[0]?.['message']) ?? {};
    call.output = { text: textOf(message['content']) ?? '', toolCalls: openAiToolCalls(message) };
    readOpenAiUsage(call, obj(response['usage']));
  }
  if (!events) return;
  let text = '';
  const tools: ToolCall[] = [];
  for (const event of events) {
    call.model = str(event['model']) ?? call.model;
    if (event['usage']) readOpenAiUsage(call, obj(event['usage']));
    const delta = obj(list(event['choices'])[0]?.['delta']) ?? {};
    text += str(delta['content']) ?? '';
    for (const partial of list(delta['tool_calls'])) {
      const index = num(partial['index']) ?? tools.length;
      const fn = obj(partial['function']) ?? {};
      const tool = (tools[index] ??= { name: '', input: '' });
      tool.name += str(fn['name']) ?? '';
      tool.input += str(fn['arguments']) ?? '';
    }
  }
  call.output = { text, toolCalls: tools.filter(Boolean) };
}

function openAiToolCalls(message: Json): ToolCall[] {
  return list(message['tool_calls']).map((call) => {
    const fn = obj(call['function']) ?? {};
    return { name: str(fn['name']) ?? '?', input: str(fn['arguments']) ?? '' };
  });
}

function readOpenAiUsage(call: LlmCall, usage: Json | undefined): void {
  const input = num(usage?.['prompt_tokens']) ?? num(usage?.['input_tokens']);
  const output = num(usage?.['completion_tokens']) ?? num(usage?.['output_tokens']);
  if (input !== undefined) call.usage.input = input;
  if (output !== undefined) call.usage.output = output;
}

function readOpenAiResponses(
  call: LlmCall,
  request: Json | undefined,
  response: Json | undefined,
  events?: Json[],
): void {
  call.system = str(request?.['instructions']);
  call.tools = list(request?.['tools']).map((t) => str(t['name']) ?? str(t['type']) ?? '?');
  const input = request?.['input'];
  if (typeof input === 'string') call.messages.push({ role: 'user', text: input, toolCalls: [] });
  for (const item of list(input)) {
    const type = str(item['type']);
    if (type === 'function_call')
      call.messages.push({
        role: 'assistant',
        text: '',
        toolCalls: [{ name: str(item['name']) ?? '?', input: str(item['arguments']) ?? '' }],
      });
    else if (type === 'function_call_output')
      call.messages.push({ role: 'tool', text: `[tool result] ${textOf(item['output']) ?? ''}`, toolCalls: [] });
    else call.messages.push({ role: str(item['role']) ?? '?', text: textOf(item['content']) ?? '', toolCalls: [] });
  }
  let final = response;
  let streamed = '';
  for (const event of events ?? []) {
    if (str(event['type']) === 'response.output_text.delta') streamed += str(event['delta']) ?? '';
    const inner = obj(event['response']);
    if (inner && list(inner['output']).length > 0) final = inner;
  }
  if (final) {
    call.model = str(final['model']) ?? call.model;
    const texts: string[] = [];
    const toolCalls: ToolCall[] = [];
    for (const item of list(final['output'])) {
      if (str(item['type']) === 'function_call')
        toolCalls.push({ name: str(item['name']) ?? '?', input: str(item['arguments']) ?? '' });
      else if (str(item['type']) === 'message') texts.push(textOf(item['content']) ?? '');
    }
    call.output = { text: texts.join('\n'), toolCalls };
    readOpenAiUsage(call, obj(final['usage']));
  } else call.output = { text: streamed, toolCalls: [] };
}

function readGemini(
  call: LlmCall,
  request: Json | undefined,
  response: Json | undefined,
  events: Json[] | undefined,
  path: string,
): void {
  call.model = /\/models\/([^/:]+):/.exec(path)?.[1];
  call.stream = call.stream || path.endsWith(':streamGenerateContent');
  call.system = geminiParts(obj(request?.['systemInstruction'])?.['parts']).text || undefined;
  call.tools = list(request?.['tools']).flatMap((t) =>
    list(t['functionDeclarations']).map((f) => str(f['name']) ?? '?'),
  );
  for (const content of list(request?.['contents'])) {
    const parts = geminiParts(content['parts']);
    call.messages.push({ role: str(content['role']) ?? 'user', ...parts });
  }
  const chunks = events ?? (response ? [response] : []);
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const chunk of chunks) {
    call.model = str(chunk['modelVersion']) ?? call.model;
    const parts = geminiParts(obj(list(chunk['candidates'])[0]?.['content'])?.['parts']);
    text += parts.text;
    toolCalls.push(...parts.toolCalls);
    const usage = obj(chunk['usageMetadata']);
    const input = num(usage?.['promptTokenCount']);
    const output = num(usage?.['candidatesTokenCount']);
    if (input !== undefined) call.usage.input = input;
    if (output !== undefined) call.usage.output = output;
  }
  call.output = { text, toolCalls };
}

function geminiParts(parts: unknown): { text: string; toolCalls: ToolCall[] } {
  const texts: string[] = [];
  const toolCalls: ToolCall[] = [];
  for (const part of list(parts)) {
    if (typeof part['text'] === 'string') texts.push(part['text']);
    const fn = obj(part['functionCall']);
    if (fn) toolCalls.push({ name: str(fn['name']) ?? '?', input: JSON.stringify(fn['args'] ?? {}) });
    const result = obj(part['functionResponse']);
    if (result) texts.push(`[tool result] ${str(result['name']) ?? ''} ${JSON.stringify(result['response'] ?? {})}`);
  }
  return { text: texts.join('\n'), toolCalls };
}

function readBedrock(
  call: LlmCall,
  request: Json | undefined,
  response: Json | undefined,
  events: Json[] | undefined,
  path: string,
): void {
  const model = /\/model\/([^/]+)\//.exec(path)?.[1];
  const converse = /\/converse(-stream)?$/.test(path);
  if (!converse) {
    // InvokeModel carries the model's own format; Anthropic's is the common one on Bedrock.
    readAnthropic(call, request, response, events);
    call.model = model !== undefined ? decodeURIComponent(model) : call.model;
    return;
  }
  call.model = model !== undefined ? decodeURIComponent(model) : undefined;
  call.system = list(request?.['system'])
    .map((s) => str(s['text']) ?? '')
    .join('\n');
  for (const message of list(request?.['messages']))
    call.messages.push({ role: str(message['role']) ?? '?', ...converseContent(message['content']) });
  if (response) {
    const message = obj(obj(response['output'])?.['message']);
    call.output = converseContent(message?.['content']);
    const usage = obj(response['usage']);
    call.usage = { input: num(usage?.['inputTokens']), output: num(usage?.['outputTokens']) };
  }
  let text = '';
  for (const event of events ?? []) {
    text += str(obj(event['delta'])?.['text']) ?? '';
    const usage = obj(event['usage']);
    if (usage) call.usage = { input: num(usage['inputTokens']), output: num(usage['outputTokens']) };
  }
  if (events) call.output = { text, toolCalls: [] };
}

function converseContent(content: unknown): { text: string; toolCalls: ToolCall[] } {
  const texts: string[] = [];
  const toolCalls: ToolCall[] = [];
  for (const block of list(content)) {
    if (typeof block['text'] === 'string') texts.push(block['text']);
    const use = obj(block['toolUse']);
    if (use) toolCalls.push({ name: str(use['name']) ?? '?', input: JSON.stringify(use['input'] ?? {}) });
    if (obj(block['toolResult'])) texts.push('[tool result]');
  }
  return { text: texts.join('\n'), toolCalls };
}

/** Bedrock InvokeModel streams wrap each provider event as `{"bytes": base64}`. */
function unwrapBedrockChunk(event: Json | undefined): Json | undefined {
  const bytes = str(event?.['bytes']);
  if (bytes === undefined) return event;
  return parseJson(Buffer.from(bytes, 'base64').toString('utf8'));
}

function textOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) return undefined;
  return value
    .map((part: unknown) => {
      if (typeof part === 'string') return part;
      const o = obj(part);
      return str(o?.['text']) ?? (o?.['content'] !== undefined ? (textOf(o['content']) ?? '') : '');
    })
    .join('\n');
}

function parseJson(text: string): Json | undefined {
  return obj(parseJsonValue(text));
}

function parseJsonValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function obj(value: unknown): Json | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : undefined;
}

function list(value: unknown): Json[] {
  return Array.isArray(value) ? value.map((v) => obj(v) ?? {}) : [];
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
