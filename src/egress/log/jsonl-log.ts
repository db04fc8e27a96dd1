import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type * as z from 'zod/mini';
import { stateFileProblem } from '../../_internal/state-file.js';
import { AgentcellError, type ErrorCode } from '../../errors.js';

/**
 * The gateway's logs (`<run>.jsonl`, `<run>.spy.jsonl`): one JSON object a line, appended
 * while the run goes on, read back through the schema of what was written. One policy for
 * every reader, whole or following:
 * - a line without its newline is still being written (or was cut by a crash): it is not
 *   read, and a follower reads it once its newline arrives;
 * - a complete line that is not JSON or not of the schema was changed after agentcell
 *   wrote it: an error naming the file, the line and what is wrong, never skipped, since
 *   these logs are the record of what the cell reached.
 */
export interface JsonlLogKind<S extends z.ZodMiniType> {
  schema: S;
  /** What a line is, for messages: `an egress event`. */
  what: string;
  code: ErrorCode;
}

/** Where a reader is in a log: the byte after the last complete line read, and that line's number + 1. */
export interface LogPosition {
  offset: number;
  line: number;
}

export const LOG_START: LogPosition = { offset: 0, line: 1 };

export interface LogChunk<T> {
  values: T[];
  /** The raw lines the values came from, as stored. */
  lines: string[];
  next: LogPosition;
}

/** The complete lines of `path` from `from` on, each checked; a missing file reads as empty. */
export function readJsonlFrom<S extends z.ZodMiniType>(
  path: string,
  kind: JsonlLogKind<S>,
  from: LogPosition = LOG_START,
): LogChunk<z.output<S>> {
  const lines = completeLines(path, from.offset);
  if (lines === undefined) return { values: [], lines: [], next: from };
  const values = lines.texts.map((text, i) => parseJsonlLine(text, kind, path, from.line + i));
  return { values, lines: lines.texts, next: { offset: lines.end, line: from.line + lines.texts.length } };
}

/** One line, checked: its value, or the error naming the file and line. */
export function parseJsonlLine<S extends z.ZodMiniType>(
  text: string,
  kind: JsonlLogKind<S>,
  path: string,
  line: number,
): z.output<S> {
  const found = stateFileProblem(text, kind.schema);
  if (found.ok) return found.value;
  throw new AgentcellError(
    kind.code,
    `${path} line ${line} is not ${kind.what}: ${found.why}. agentcell appends only whole lines of that shape, so the file was changed after it was written; see the line with: sed -n ${line}p ${path}`,
  );
}

/** The text of the newline-ended lines from `offset`, and the offset after them; undefined when none. */
function completeLines(path: string, offset: number): { texts: string[]; end: number } | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return undefined;
    const buffer = Buffer.alloc(size - offset);
    let read = 0;
    while (read < buffer.length) {
      const n = readSync(fd, buffer, read, buffer.length - read, offset + read);
      if (n === 0) break;
      read += n;
    }
    // Decoded only up to the last newline: a character cut by a write in progress waits whole.
    const last = buffer.subarray(0, read).lastIndexOf(0x0a);
    if (last === -1) return undefined;
    return { texts: buffer.subarray(0, last).toString('utf8').split('\n'), end: offset + last + 1 };
  } finally {
    closeSync(fd);
  }
}
