import { existsSync } from 'node:fs';
import type { AgentcellPaths } from '../paths.js';
import { cellDir } from '../cell/cell-store.js';
import { cellEgressDir } from '../cell/cell-egress-log.js';
import { egressLogPath, readEgressLog } from '../egress/log/egress-log-reader.js';
import { spyLogPath } from '../egress/log/spy-files.js';
import { parseSpyRecord, readSpyLog } from '../egress/log/spy-render.js';
import { listReceipts } from '../receipts/receipt-store.js';
import { listJournal } from '../receipts/run-journal.js';
import { findSession } from './session-record.js';
import { settleSession } from './session-status.js';

/** One step of a session, in time order. */
export type TimelineEvent = { time: string } & (
  | { kind: 'session'; state: string; detail: string }
  | { kind: 'run'; run: string; phase: 'started' | 'ended'; detail: string }
  | {
      kind: 'llm';
      run: string;
      provider: string;
      model: string | null;
      status: number;
      durationMs: number;
      toolCalls: string[];
      text: string;
    }
  | {
      kind: 'egress';
      run: string;
      decision: 'allow' | 'deny';
      host: string;
      port: number;
      reason: string;
      detail: string;
    }
  | { kind: 'checkpoint'; run: string; layer: string }
  | {
      kind: 'turn';
      run: string;
      turn: number;
      /** What `restore --to` takes: `turn:N@RUN`. */
      checkpoint: string;
      contentHash: string | null;
      skipped?: string;
    }
  | { kind: 'decision'; receipt: string; decision: string; changes: number }
);

/**
 * What happened in a session, from its own records: the session's states, its run
 * (journal or receipt), each LLM call the gateway's spy recorded, each egress
 * decision, each turn checkpoint (its LLM request's start; the journal's while the run
 * goes on), the layer its run froze and the decisions taken on it since.
 */
export async function sessionTimeline(paths: AgentcellPaths, id: string): Promise<TimelineEvent[]> {
  const found = findSession(paths, id);
  const record = await settleSession(paths, found);
  const dir = cellDir(paths, record.cell);
  const events: TimelineEvent[] = [
    { time: record.createdAt, kind: 'session', state: 'created', detail: record.command.join(' ') },
  ];
  const run = record.run;
  if (run !== null) {
    const receipts = listReceipts(dir);
    const receipt = receipts.find((r) => r.id === run);
    const journal = listJournal(dir).entries.find((e) => e.id === run);
    const startedAt = receipt?.startedAt ?? journal?.startedAt ?? record.startedAt ?? record.createdAt;
    events.push({
      time: startedAt,
      kind: 'run',
      run,
      phase: 'started',
      detail: (receipt?.command ?? journal?.draft.command ?? []).join(' '),
    });
    for (const t of receipt?.turns ?? journal?.draft.turns ?? [])
      events.push({
        time: t.at,
        kind: 'turn',
        run,
        turn: t.turn,
        checkpoint: `turn:${t.turn}@${run}`,
        contentHash: t.contentHash,
        ...(t.skipped !== undefined ? { skipped: t.skipped } : {}),
      });
    const spy = spyLogPath(dir, run);
    if (existsSync(spy))
      for (const record of readSpyLog(spy)) {
        const call = parseSpyRecord(record);
        events.push({
          time: call.time,
          kind: 'llm',
          run,
          provider: call.provider,
          model: call.model ?? null,
          status: call.status,
          durationMs: call.durationMs,
          toolCalls: call.output.toolCalls.map((t) => t.name),
          text: call.output.text.slice(0, 200),
        });
      }
    const egress = egressLogPath(cellEgressDir(paths, record.cell), run);
    if (existsSync(egress))
      for (const e of readEgressLog(egress).events)
        events.push({
          time: e.time,
          kind: 'egress',
          run,
          decision: e.decision,
          host: e.host,
          port: e.port,
          reason: e.reason,
          detail: e.kind === 'request' ? `${e.method ?? ''} ${e.path ?? ''} ${e.status ?? ''}`.trim() : e.kind,
        });
    if (receipt) {
      events.push({
        time: receipt.endedAt,
        kind: 'run',
        run,
        phase: 'ended',
        detail: `${receipt.status}, exit ${receipt.exitCode ?? 'none'}, ${receipt.changes.added} added ${receipt.changes.modified} modified ${receipt.changes.deleted} deleted`,
      });
      if (receipt.checkpoint.after !== null && receipt.checkpoint.after !== receipt.checkpoint.before)
        events.push({ time: receipt.endedAt, kind: 'checkpoint', run, layer: receipt.checkpoint.after });
      const seqOf = new Map(receipts.map((r) => [r.id, r.seq]));
      for (const r of receipts)
        if (r.kind === 'decision' && r.seq > receipt.seq && (seqOf.get(r.decides ?? '') ?? 0) >= receipt.seq)
          events.push({
            time: r.startedAt,
            kind: 'decision',
            receipt: r.id,
            decision: r.decision,
            changes: r.changes.added + r.changes.modified + r.changes.deleted,
          });
    }
  }
  if (record.endedAt !== null)
    events.push({
      time: record.endedAt,
      kind: 'session',
      state: record.state,
      detail: record.error?.message ?? (record.exitCode !== null ? `exit ${record.exitCode}` : ''),
    });
  // Stable: events of the same instant keep the order they were added in.
  return events
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.time.localeCompare(b.e.time) || a.i - b.i)
    .map(({ e }) => e);
}
