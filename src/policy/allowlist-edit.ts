import { existsSync, readFileSync } from 'node:fs';
import { parse, TomlError } from 'smol-toml';
import { AgentcellError } from '../errors.js';
import { canonicalJson } from '../_internal/canonical-hash.js';
import { hostPatternProblem } from './host-pattern.js';
import { validateLayer } from './policy-layer.js';

/** What `agentcell allow HOST…` does to a policy file. */
export interface AllowlistEdit {
  file: string;
  /** The file does not exist yet and would be made. */
  created: boolean;
  /** New `[network] allow` entries, in the order given. */
  added: string[];
  /** Entries given that the file already allows. */
  present: string[];
  before: string;
  /** The whole new text; equal to `before` when nothing is added. */
  after: string;
}

/**
 * Plans adding `entries` to `[network] allow` of the TOML policy `file` as a text edit,
 * so comments, order and layout stay as they are: appended inside the existing array
 * (one per line if the array spans lines), or an `allow` line under `[network]`, or a new
 * `[network]` table at the end. Each entry must pass the policy's own host-pattern check
 * (a bare `*` is refused). The edit is proven by parsing: the new file must hold exactly
 * the old values plus the new entries, and validate as a policy; a layout this can't
 * edit that way (dotted `network.*` keys, an inline `network = {…}`) is refused.
 */
export function planAllowlistEdit(file: string, entries: readonly string[]): AllowlistEdit {
  const wanted = normalizeEntries(entries);
  const created = !existsSync(file);
  const before = created ? '' : readFileSync(file, 'utf8');
  const values = parseToml(before, file);
  const network = values['network'];
  if (network !== undefined && !isTable(network))
    throw new AgentcellError('POLICY_INVALID', `${file}: key "network": expected a table`);
  const current = network?.['allow'];
  if (current !== undefined && !(Array.isArray(current) && current.every((v) => typeof v === 'string')))
    throw new AgentcellError('POLICY_INVALID', `${file}: key "network.allow": expected an array of strings`);
  const existing = new Set((current ?? []).map((entry) => entry.toLowerCase()));
  const added = wanted.filter((entry) => !existing.has(entry));
  const present = wanted.filter((entry) => existing.has(entry));
  if (added.length === 0) return { file, created: false, added, present, before, after: before };

  const after = insertAllowEntries(before, added);
  const expected = { ...values, network: { ...(network ?? {}), allow: [...(current ?? []), ...added] } };
  const result = parsedOrUndefined(after);
  if (!result || canonicalJson(result) !== canonicalJson(expected))
    throw new AgentcellError(
      'POLICY_INVALID',
      `${file}: could not add to [network] allow without changing anything else; add ${added.join(', ')} by hand`,
    );
  validateLayer({ source: file, values: result });
  return { file, created, added, present, before, after };
}

/** `-`/`+` lines for what changed, with up to 2 lines of context either side (the edit is one region). */
export function editDiff(edit: AllowlistEdit): string[] {
  const a = splitLines(edit.before);
  const b = splitLines(edit.after);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  if (start === endA && start === endB) return [];
  const from = Math.max(0, start - 2);
  return [
    `--- ${edit.created ? '/dev/null' : edit.file}`,
    `+++ ${edit.file}`,
    `@@ -${from + 1},${endA - from + Math.min(2, a.length - endA)} +${from + 1},${endB - from + Math.min(2, b.length - endB)} @@`,
    ...a.slice(from, start).map((line) => ` ${line}`),
    ...a.slice(start, endA).map((line) => `-${line}`),
    ...b.slice(start, endB).map((line) => `+${line}`),
    ...a.slice(endA, endA + 2).map((line) => ` ${line}`),
  ];
}

function normalizeEntries(entries: readonly string[]): string[] {
  if (entries.length === 0) throw new AgentcellError('USAGE', 'name at least one HOST[:PORT] to allow');
  const out: string[] = [];
  for (const raw of entries) {
    const entry = raw.trim().toLowerCase();
    const problem = hostPatternProblem(entry);
    if (problem) throw new AgentcellError('USAGE', `allow "${raw}": ${problem}`);
    if (!out.includes(entry)) out.push(entry);
  }
  return out;
}

/** The text with `added` appended to `[network] allow`, wherever and however the file spells it. */
function insertAllowEntries(text: string, added: readonly string[]): string {
  const quoted = added.map((entry) => JSON.stringify(entry));
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const header = findNetworkHeader(text);
  if (header === undefined) {
    // A new table at the end; a file that spells `network` otherwise fails the check after.
    const separator = text === '' || text.endsWith('\n') ? '' : eol;
    const gap = text === '' ? '' : eol;
    return `${text}${separator}${gap}[network]${eol}allow = [${quoted.join(', ')}]${eol}`;
  }
  const allow = findAllowArray(text, header.bodyStart, header.bodyEnd);
  if (allow === undefined)
    return `${text.slice(0, header.bodyStart)}allow = [${quoted.join(', ')}]${eol}${text.slice(header.bodyStart)}`;
  const { open, close, lastValueEnd, trailingComma } = allow;
  const at = lastValueEnd ?? open + 1;
  if (!text.slice(open, close).includes('\n')) {
    // One line: `["a", "b"]` → `["a", "b", "new"]`.
    const rest = text.slice(at, close).replace(/^\s*,?\s*/, '');
    return `${text.slice(0, at)}${lastValueEnd === undefined ? '' : ', '}${quoted.join(', ')}${rest}${text.slice(close)}`;
  }
  // Several lines: one line per entry before the closing bracket, indented like the last value.
  const comma = lastValueEnd !== undefined && !trailingComma ? ',' : '';
  const indent = /^[ \t]*/.exec(lineAt(text, at))?.[0] ?? '';
  const itemIndent = lastValueEnd === undefined || indent === '' ? `${indent}  ` : indent;
  const lines = quoted.map((q) => `${itemIndent}${q},${eol}`).join('');
  const closeLineStart = text.lastIndexOf('\n', close - 1) + 1;
  if (at <= closeLineStart)
    return `${text.slice(0, at)}${comma}${text.slice(at, closeLineStart)}${lines}${text.slice(closeLineStart)}`;
  // The last value shares the closing bracket's line (`"b" ]`): the bracket moves to a line of its own.
  return `${text.slice(0, at)}${comma}${text.slice(at, close).trimEnd()}${eol}${lines}${text.slice(close)}`;
}

/** The `[network]` table: where its body starts (after the header line) and ends (the next header). */
function findNetworkHeader(text: string): { bodyStart: number; bodyEnd: number } | undefined {
  const header = /^[ \t]*\[[ \t]*network[ \t]*\][ \t]*(#[^\n]*)?(\r?\n|$)/m.exec(text);
  if (!header) return undefined;
  const bodyStart = header.index + header[0].length;
  let bodyEnd = text.length;
  let depth = 0;
  let lineStart = true;
  // The next `[` that starts a line outside any string, array or inline table.
  scanToml(text, bodyStart, (i, ch, kind) => {
    if (kind !== 'code') {
      lineStart = false;
      return true;
    }
    if (ch === '\n') lineStart = true;
    else if (ch === ' ' || ch === '\t' || ch === '\r') return true;
    else if (ch === '[' && lineStart && depth === 0) {
      bodyEnd = text.lastIndexOf('\n', i - 1) + 1;
      return false;
    } else {
      if (ch === '[' || ch === '{') depth++;
      else if (ch === ']' || ch === '}') depth--;
      lineStart = false;
    }
    return true;
  });
  return { bodyStart, bodyEnd };
}

interface AllowArray {
  open: number;
  close: number;
  /** Just after the last value in the array; undefined for an empty array. */
  lastValueEnd?: number;
  trailingComma: boolean;
}

/** The `allow = [ … ]` array between `start` and `end`, found by scanning TOML strings and comments. */
function findAllowArray(text: string, start: number, end: number): AllowArray | undefined {
  const key = /^[ \t]*(?:allow|"allow"|'allow')[ \t]*=[ \t]*\[/m.exec(text.slice(start, end));
  if (!key) return undefined;
  const open = start + key.index + key[0].length - 1;
  let depth = 0;
  let lastValueEnd: number | undefined;
  let trailingComma = false;
  let close: number | undefined;
  scanToml(text, open, (i, ch, kind) => {
    if (kind === 'string-end') {
      if (depth === 1) {
        lastValueEnd = i + 1;
        trailingComma = false;
      }
      return true;
    }
    if (kind !== 'code') return true;
    if (ch === '[') depth++;
    else if (ch === ']') {
      depth--;
      if (depth === 0) {
        close = i;
        return false;
      }
    } else if (ch === ',' && depth === 1) trailingComma = true;
    return true;
  });
  if (close === undefined) return undefined;
  return { open, close, trailingComma, ...(lastValueEnd !== undefined ? { lastValueEnd } : {}) };
}

type CharKind = 'code' | 'string' | 'string-end' | 'comment';

/**
 * Walks TOML text from `from`, telling `visit` whether each character is code, inside a
 * string (basic, literal, multi-line), the last character of one, or in a comment;
 * stops when `visit` returns false.
 */
function scanToml(text: string, from: number, visit: (i: number, ch: string, kind: CharKind) => boolean): void {
  let i = from;
  while (i < text.length) {
    const ch = text.charAt(i);
    if (ch === '#') {
      while (i < text.length && text.charAt(i) !== '\n') if (!visit(i, text.charAt(i++), 'comment')) return;
      continue;
    }
    if (ch === '"' || ch === "'") {
      const triple = text.startsWith(ch.repeat(3), i);
      const quote = triple ? ch.repeat(3) : ch;
      let j = i + quote.length;
      while (j < text.length && !text.startsWith(quote, j)) j += ch === '"' && text.charAt(j) === '\\' ? 2 : 1;
      // A multi-line string may end with up to two extra quotes: `""""a""""`.
      let endAt = j + quote.length;
      while (triple && text.charAt(endAt) === ch && endAt - j < 5) endAt++;
      for (let k = i; k < endAt - 1 && k < text.length; k++) if (!visit(k, text.charAt(k), 'string')) return;
      if (!visit(endAt - 1, ch, 'string-end')) return;
      i = endAt;
      continue;
    }
    if (!visit(i, ch, 'code')) return;
    i++;
  }
}

function lineAt(text: string, index: number): string {
  const start = text.lastIndexOf('\n', index - 1) + 1;
  const end = text.indexOf('\n', index);
  return text.slice(start, end === -1 ? text.length : end);
}

function splitLines(text: string): string[] {
  if (text === '') return [];
  return text.replace(/\r?\n$/, '').split(/\r?\n/);
}

function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    return parse(text);
  } catch (cause) {
    if (cause instanceof TomlError)
      throw new AgentcellError(
        'POLICY_INVALID',
        `${file}:${cause.line}:${cause.column}: not valid TOML: ${cause.message.split('\n')[0] ?? ''}`,
        { cause },
      );
    throw cause;
  }
}

function parsedOrUndefined(text: string): Record<string, unknown> | undefined {
  try {
    return parse(text);
  } catch {
    return undefined;
  }
}

function isTable(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
