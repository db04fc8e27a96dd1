import { closeSync, openSync, readdirSync, readSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentcellError } from '../../errors.js';
import type { EgressEvent } from './egress-log.js';

/** `<logDir>/<run>.jsonl`, as `startRunGateway` writes it. */
export function egressLogPath(logDir: string, run: string): string {
  return join(logDir, `${run}.jsonl`);
}

/** The runs that have an egress log in `logDir`, oldest first (run ids sort by time). */
export function listEgressLogs(logDir: string): string[] {
  try {
    // Only `<run>.jsonl`: the spy log `<run>.spy.jsonl` sits beside it and is no egress log.
    return readdirSync(logDir)
      .map((name) => /^(r-[0-9a-z]{17})\.jsonl$/.exec(name)?.[1])
      .filter((run): run is string => run !== undefined)
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** One line of an egress log, checked field by field; a broken line is an error naming the file and line. */
export function parseEgressLine(line: string, where: string): EgressEvent {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new AgentcellError('EGRESS_LOG_INVALID', `${where}: not a JSON line`);
  }
  const event = value as Record<string, unknown>;
  const need = (key: string, ok: (v: unknown) => boolean, expected: string): void => {
    if (typeof value !== 'object' || value === null || !ok(event[key]))
      throw new AgentcellError('EGRESS_LOG_INVALID', `${where}: "${key}" should be ${expected}`);
  };
  const str = (v: unknown): boolean => typeof v === 'string';
  const num = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
  need('time', str, 'an ISO time');
  need('host', str, 'a string');
  need('port', num, 'a number');
  need('address', (v) => v === null || str(v), 'a string or null');
  need('decision', (v) => v === 'allow' || v === 'deny', '"allow" or "deny"');
  need('rule', (v) => v === null || str(v), 'a string or null');
  need('reason', str, 'a reason code');
  need('bytesUp', num, 'a number');
  need('bytesDown', num, 'a number');
  return value as EgressEvent;
}

export interface EgressLogChunk {
  events: EgressEvent[];
  /** The raw lines the events came from, as stored (for `--json`). */
  lines: string[];
}

/**
 * Reads an egress log from `offset` on: the complete lines, parsed, and the offset after
 * the last one. A line still being written (no newline yet) is left for the next read.
 * A missing file reads as empty.
 */
export function readEgressLogFrom(path: string, offset: number): EgressLogChunk & { offset: number } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { events: [], lines: [], offset };
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return { events: [], lines: [], offset };
    const buffer = Buffer.alloc(size - offset);
    const read = readSync(fd, buffer, 0, buffer.length, offset);
    const end = buffer.subarray(0, read).lastIndexOf(0x0a);
    if (end === -1) return { events: [], lines: [], offset };
    const lines = buffer.subarray(0, end).toString('utf8').split('\n');
    const events = lines.map((line, i) => parseEgressLine(line, `${path} (byte ${offset}, line ${i + 1})`));
    return { events, lines, offset: offset + end + 1 };
  } finally {
    closeSync(fd);
  }
}

/** A whole egress log. */
export function readEgressLog(path: string): EgressLogChunk {
  const { events, lines } = readEgressLogFrom(path, 0);
  return { events, lines };
}

export interface FollowOptions {
  /** Whether the run is still going; once it says no, the rest of the log is read and following ends. */
  running: () => boolean;
  onChunk: (chunk: EgressLogChunk) => void;
  /** How often the file is looked at; default 100 ms. */
  pollMs?: number;
  signal?: AbortSignal;
}

/**
 * Tails a run's egress log until the run ends (or `signal` aborts), handing over each
 * batch of complete lines. The log may not exist yet: the run makes it when its gateway
 * starts. Polling, not inotify: the log sits in the state dir, which may be on any filesystem.
 */
export async function followEgressLog(path: string, options: FollowOptions): Promise<void> {
  const pollMs = options.pollMs ?? 100;
  let offset = 0;
  const drain = (): void => {
    const chunk = readEgressLogFrom(path, offset);
    offset = chunk.offset;
    if (chunk.lines.length > 0) options.onChunk({ events: chunk.events, lines: chunk.lines });
  };
  while (!options.signal?.aborted) {
    // Asked before reading, so the lines written just before the run ended are still read.
    const live = options.running();
    drain();
    if (!live) return;
    await sleep(pollMs, undefined, { signal: options.signal }).catch(() => undefined);
  }
}
