import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentcellError } from '../../errors.js';
import { isReceiptId } from '../../receipts/receipt.js';
import { LOG_START, readJsonlFrom, type JsonlLogKind } from './jsonl-log.js';
import { SpyRecordSchema, type SpyRecord } from './spy-log.js';

const SUFFIX = '.spy.jsonl';

/** A run's spy log: `<cellDir>/egress/<run>.spy.jsonl`, beside its egress log. */
export function spyLogPath(cellDir: string, run: string): string {
  if (!isReceiptId(run))
    throw new AgentcellError('USAGE', `--run ${run}: not a run id (agentcell receipt list shows them)`);
  return join(cellDir, 'egress', `${run}${SUFFIX}`);
}

/** Runs of a cell that have a spy log, oldest first (run ids sort by time). */
export function spyRuns(cellDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(join(cellDir, 'egress'));
  } catch {
    return [];
  }
  return names
    .filter((name) => name.endsWith(SUFFIX))
    .map((name) => name.slice(0, -SUFFIX.length))
    .filter(isReceiptId)
    .sort();
}

/** The spy log of `run`, or of the latest run that has one. */
export function findSpyLog(cellDir: string, cell: string, run?: string): { run: string; path: string } {
  const chosen = run ?? spyRuns(cellDir).at(-1);
  if (chosen === undefined)
    throw new AgentcellError(
      'SPY_LOG_NOT_FOUND',
      `cell ${cell} has no spy log yet: spy records LLM API calls to inspected hosts ([network] inspect, or a secret with inject = "proxy")`,
    );
  const path = spyLogPath(cellDir, chosen);
  try {
    statSync(path);
  } catch {
    throw new AgentcellError('SPY_LOG_NOT_FOUND', `run ${chosen} of cell ${cell} has no spy log`);
  }
  return { run: chosen, path };
}

/** A spy log line: checked as jsonl-log.ts says (a damaged line is SPY_LOG_INVALID naming it). */
export const SPY_LINE: JsonlLogKind<typeof SpyRecordSchema> = {
  schema: SpyRecordSchema,
  what: 'a spy record',
  code: 'SPY_LOG_INVALID',
};

/**
 * Calls `onRecord` for every record in the log, then for each one appended, polling
 * every `intervalMs` until `signal` aborts or, when given, `running` says the run has
 * ended (the rest of the log is read first). The log may not exist yet: a run makes it
 * at its first inspected call. Partial lines wait for their end; a damaged line rejects.
 */
export async function followSpyLog(
  path: string,
  onRecord: (record: SpyRecord) => void,
  options: { signal: AbortSignal; intervalMs?: number; running?: () => boolean },
): Promise<void> {
  let position = LOG_START;
  while (!options.signal.aborted) {
    // Asked before reading, so what the run wrote just before it ended is still read.
    const live = options.running?.() ?? true;
    const chunk = readJsonlFrom(path, SPY_LINE, position);
    position = chunk.next;
    for (const record of chunk.values) onRecord(record);
    if (!live) return;
    // timers/promises removes its abort listener when the timer ends: one per poll would pile up.
    await sleep(options.intervalMs ?? 250, undefined, { signal: options.signal }).catch(() => undefined);
  }
}

/**
 * `spy --follow` without `--run`: the cell's live run, then each next one, until `signal`
 * aborts. Started between runs it waits for the next run: an ended run is not replayed.
 */
export async function followLiveSpy(
  cellDir: string,
  liveRuns: () => string[],
  onRecord: (record: SpyRecord) => void,
  options: { signal: AbortSignal; intervalMs?: number },
): Promise<void> {
  while (!options.signal.aborted) {
    const run = liveRuns().at(-1);
    if (run === undefined) {
      await sleep(options.intervalMs ?? 250, undefined, { signal: options.signal }).catch(() => undefined);
      continue;
    }
    await followSpyLog(spyLogPath(cellDir, run), onRecord, {
      ...options,
      running: () => liveRuns().includes(run),
    });
  }
}
