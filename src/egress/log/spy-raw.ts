import type { SpyRecord } from './spy-log.js';

/**
 * `spy --raw`: one call's request and response bodies exactly as the spy log holds them
 * (secrets already redacted when written, no HTTP headers kept), under a summary line;
 * a JSON body is pretty-printed, anything else is shown as is.
 */
export function renderSpyRaw(record: SpyRecord): string {
  const summary = `── ${record.time} ${record.provider} ${record.method} ${record.host}${record.path} → ${record.status} (${record.durationMs} ms)`;
  return [terminalSafe(summary), bodyBlock('request', record.request), bodyBlock('response', record.response)].join(
    '\n',
  );
}

function bodyBlock(label: string, body: SpyRecord['request']): string {
  const head = `── ${label} (${body.contentType || 'no content-type'}${body.truncated ? ', truncated' : ''})`;
  return `${terminalSafe(head)}\n${terminalSafe(pretty(body.body))}`;
}

function pretty(body: string): string {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

/**
 * Bodies come from the cell and the provider: their control characters (ANSI escapes
 * that could rewrite the terminal, carriage returns that hide a line) are shown as
 * `\u{..}`, not sent to the terminal. Newlines and tabs stay.
 */
export function terminalSafe(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
}
