import { createHash } from 'node:crypto';
import { appendFileSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { constants, gunzipSync, gzipSync } from 'node:zlib';

/**
 * Everything a session's terminal printed, stored under its dir as gzip segments
 * `transcript-<offset>.gz` (the offset of its first byte in the whole stream). Each
 * flush appends one complete gzip member with one write, so a supervisor killed at any
 * point leaves a readable transcript up to its last flush. Past `capBytes` of stored
 * (compressed) data the oldest segments are dropped; the sha256 covers the whole stream.
 */
export const TRANSCRIPT_CAP_BYTES = 32 * 1024 * 1024;
const SEGMENT_BYTES = 1024 * 1024;
const SEGMENT = /^transcript-(\d{15})\.gz$/;

export interface TranscriptSummary {
  sha256: string;
  bytes: number;
}

export interface TranscriptWriter {
  write(chunk: Buffer): void;
  /** Stores what was written so far; returns the summary of the stored stream. */
  flush(): TranscriptSummary;
  summary(): TranscriptSummary;
}

export function createTranscriptWriter(dir: string, capBytes = TRANSCRIPT_CAP_BYTES): TranscriptWriter {
  const hash = createHash('sha256');
  let bytes = 0;
  let pending: Buffer[] = [];
  let segment: { path: string; size: number } | undefined;
  const summary = (): TranscriptSummary => ({ sha256: hash.copy().digest('hex'), bytes });
  return {
    write: (chunk) => void pending.push(chunk),
    summary,
    flush: () => {
      if (pending.length === 0) return summary();
      const data = Buffer.concat(pending);
      pending = [];
      if (!segment || segment.size >= SEGMENT_BYTES) {
        segment = { path: join(dir, `transcript-${String(bytes).padStart(15, '0')}.gz`), size: 0 };
        dropOldSegments(dir, capBytes - SEGMENT_BYTES);
      }
      const member = gzipSync(data);
      appendFileSync(segment.path, member, { mode: 0o600 });
      segment.size += member.length;
      hash.update(data);
      bytes += data.length;
      return summary();
    },
  };
}

function segments(dir: string): { path: string; offset: number }[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((name) => ({ name, match: SEGMENT.exec(name) }))
    .filter((e) => e.match)
    .map((e) => ({ path: join(dir, e.name), offset: Number(e.match?.[1]) }))
    .sort((a, b) => a.offset - b.offset);
}

function dropOldSegments(dir: string, keepBytes: number): void {
  const all = segments(dir);
  let total = all.reduce((sum, s) => sum + statSync(s.path).size, 0);
  for (const s of all) {
    if (total <= keepBytes) break;
    total -= statSync(s.path).size;
    unlinkSync(s.path);
  }
}

export interface StoredTranscript {
  /** The stream from `offset` on (earlier bytes were dropped by the cap). */
  data: Buffer;
  offset: number;
}

/** The stored transcript, up to `until` bytes of the whole stream when given. */
export function readTranscript(dir: string, until?: number): StoredTranscript {
  const all = segments(dir);
  const offset = all[0]?.offset ?? 0;
  // A member cut short (a full disk) is read as far as it goes.
  const parts = all.map((s) => gunzipSync(readFileSync(s.path), { finishFlush: constants.Z_SYNC_FLUSH }));
  const data = Buffer.concat(parts);
  return { data: until === undefined ? data : data.subarray(0, Math.max(0, until - offset)), offset };
}
