import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import * as z from 'zod/mini';
import { makeDirs } from '../../_internal/make-dirs.js';

/** The LLM APIs `spy` recognises, by request path. */
const LLM_PROVIDERS = ['anthropic', 'openai-chat', 'openai-responses', 'gemini', 'bedrock'] as const;
export type LlmProvider = (typeof LLM_PROVIDERS)[number];

/** A body as the gateway saw it (possibly compressed, possibly cut at the capture cap). */
export interface CapturedBody {
  contentType: string;
  contentEncoding?: string;
  body: Buffer;
  truncated: boolean;
}

export interface SpyExchangeInput {
  time: string;
  host: string;
  method: string;
  path: string;
  status: number;
  provider: LlmProvider;
  durationMs: number;
  request: CapturedBody;
  response: CapturedBody;
}

/** One line of a run's spy log (`<run>.spy.jsonl`): bodies as text, secrets redacted, no headers. */
export interface SpyRecord {
  time: string;
  cell: string;
  run: string;
  host: string;
  method: string;
  path: string;
  status: number;
  provider: LlmProvider;
  durationMs: number;
  request: { contentType: string; body: string; truncated: boolean };
  response: { contentType: string; body: string; truncated: boolean };
}

const bodySchema = z.strictObject({ contentType: z.string(), body: z.string(), truncated: z.boolean() });

/** A spy log line as read back (`spy-files.ts`); typed so it can only hold a `SpyRecord`. */
export const SpyRecordSchema: z.ZodMiniType<SpyRecord> = z.strictObject({
  time: z.iso.datetime(),
  cell: z.string(),
  run: z.string(),
  host: z.string(),
  method: z.string(),
  path: z.string(),
  status: z.int(),
  provider: z.enum(LLM_PROVIDERS),
  durationMs: z.number().check(z.nonnegative()),
  request: bodySchema,
  response: bodySchema,
});

export interface SpyRecorder {
  /** Which LLM API this request is, if any (only those are captured). */
  provider(host: string, path: string): LlmProvider | undefined;
  record(exchange: SpyExchangeInput): void;
}

export interface SpyLog extends SpyRecorder {
  open(): Promise<void>;
  close(): Promise<void>;
}

/** Bodies are written up to this many characters each. */
export const SPY_BODY_LIMIT = 1024 * 1024;

const PROVIDER_PATHS: [RegExp, LlmProvider][] = [
  [/\/v1\/messages$/, 'anthropic'],
  [/\/chat\/completions$/, 'openai-chat'],
  [/\/v1\/responses$/, 'openai-responses'],
  [/\/models\/[^/]+:(generateContent|streamGenerateContent)$/, 'gemini'],
  [/\/model\/[^/]+\/(invoke|invoke-with-response-stream|converse|converse-stream)$/, 'bedrock'],
];

export function llmProvider(path: string): LlmProvider | undefined {
  return PROVIDER_PATHS.find(([pattern]) => pattern.test(path))?.[1];
}

/**
 * The run's spy log: LLM API exchanges through inspected hosts, one JSON line each,
 * file 0600. No headers are kept (auth lives there); every secret value the gateway
 * knows is replaced by `[redacted:NAME]` wherever it appears in a body or path, and so
 * are a few well-known credential shapes. Write failures only stop the spy log: the
 * egress log is the record that must not be lost.
 */
export function createSpyLog(options: {
  path: string;
  cell: string;
  run: string;
  secrets: readonly { name: string; value: string }[];
}): SpyLog {
  let stream: WriteStream | undefined;
  const redactions = options.secrets.filter((s) => s.value.length > 0).sort((a, b) => b.value.length - a.value.length);
  const redact = (text: string): string => redactSecrets(text, redactions);

  return {
    async open() {
      makeDirs(dirname(options.path), 0o700);
      const opened = createWriteStream(options.path, { flags: 'a', mode: 0o600 });
      await once(opened, 'open');
      opened.on('error', () => {
        stream = undefined;
      });
      stream = opened;
    },
    provider: (_host, path) => llmProvider(path),
    record(exchange) {
      if (!stream) return;
      const record: SpyRecord = {
        time: exchange.time,
        cell: options.cell,
        run: options.run,
        host: exchange.host,
        method: exchange.method,
        path: redact(exchange.path),
        status: exchange.status,
        provider: exchange.provider,
        durationMs: exchange.durationMs,
        request: bodyText(exchange.request, redact),
        response: bodyText(exchange.response, redact),
      };
      stream.write(`${JSON.stringify(record)}\n`);
    },
    async close() {
      const current = stream;
      stream = undefined;
      if (!current || current.destroyed) return;
      await new Promise<void>((resolve) => current.end(resolve));
    },
  };
}

/** Secret values out, longest first, then credential-looking strings a provider might echo. */
export function redactSecrets(text: string, secrets: readonly { name: string; value: string }[]): string {
  let out = text;
  for (const { name, value } of secrets) out = out.split(value).join(`[redacted:${name}]`);
  return out.replace(/\b(sk-ant-[A-Za-z0-9_-]{8,}|sk-[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{30,})/g, '[redacted]');
}

function bodyText(
  captured: CapturedBody,
  redact: (text: string) => string,
): { contentType: string; body: string; truncated: boolean } {
  let raw = captured.body;
  let truncated = captured.truncated;
  const encoding = (captured.contentEncoding ?? '').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity') {
    try {
      if (encoding === 'gzip' || encoding === 'x-gzip') raw = gunzipSync(raw);
      else if (encoding === 'deflate') raw = inflateSync(raw);
      else if (encoding === 'br') raw = brotliDecompressSync(raw);
      else return { contentType: captured.contentType, body: `[${encoding}-encoded body not decoded]`, truncated };
    } catch {
      return { contentType: captured.contentType, body: `[${encoding} body could not be decoded]`, truncated: true };
    }
  }
  const binary = /eventstream|octet-stream/i.test(captured.contentType);
  let text = binary ? binaryEvents(raw) : raw.toString('utf8');
  if (text.length > SPY_BODY_LIMIT) {
    text = text.slice(0, SPY_BODY_LIMIT);
    truncated = true;
  }
  return { contentType: captured.contentType, body: redact(text), truncated };
}

/**
 * AWS event-stream (Bedrock's streaming responses): the JSON payloads of each message,
 * one per line. Each frame: total length, headers length, prelude CRC, headers, payload, CRC.
 */
function binaryEvents(raw: Buffer): string {
  const lines: string[] = [];
  let offset = 0;
  while (offset + 16 <= raw.length) {
    const total = raw.readUInt32BE(offset);
    const headers = raw.readUInt32BE(offset + 4);
    if (total < 16 || offset + total > raw.length) break;
    const payload = raw.subarray(offset + 12 + headers, offset + total - 4).toString('utf8');
    lines.push(payload);
    offset += total;
  }
  return lines.join('\n');
}
