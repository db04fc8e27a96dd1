import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EgressEventSchema, type EgressEvent } from './egress-log.js';
import { LOG_START, readJsonlFrom, type JsonlLogKind, type LogPosition } from './jsonl-log.js';

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

const EGRESS_LINE: JsonlLogKind<typeof EgressEventSchema> = {
  schema: EgressEventSchema,
  what: 'an egress event',
  code: 'EGRESS_LOG_INVALID',
};

export interface EgressLogChunk {
  events: EgressEvent[];
  /** The raw lines the events came from, as stored (for `--json`). */
  lines: string[];
}

/**
 * Reads an egress log from `from` on: the complete lines, checked (jsonl-log.ts: a line
 * still being written is left for the next read, a damaged one is EGRESS_LOG_INVALID
 * naming the line), and where the next read starts. A missing file reads as empty.
 */
export function readEgressLogFrom(path: string, from: LogPosition = LOG_START): EgressLogChunk & { next: LogPosition } {
  const { values, lines, next } = readJsonlFrom(path, EGRESS_LINE, from);
  return { events: values, lines, next };
}

/** A whole egress log. */
export function readEgressLog(path: string): EgressLogChunk {
  const { events, lines } = readEgressLogFrom(path);
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
  let position = LOG_START;
  const drain = (): void => {
    const chunk = readEgressLogFrom(path, position);
    position = chunk.next;
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
