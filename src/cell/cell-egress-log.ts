import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { isProcessAlive } from '../_internal/process-identity.js';
import { isReceiptId } from '../receipts/receipt.js';
import { listJournal } from '../receipts/run-journal.js';
import {
  egressLogPath,
  followEgressLog,
  listEgressLogs,
  readEgressLog,
  type EgressLogChunk,
} from '../egress/log/egress-log-reader.js';
import { cellDir } from './cell-store.js';

/** Which runs' egress logs to read: one run, all of them, or (neither) the live or latest run. */
export interface EgressLogChoice {
  run?: string;
  all?: boolean;
}

/** Where a cell's runs write their egress logs (`startRunGateway` makes it). */
export function cellEgressDir(paths: AgentcellPaths, cell: string): string {
  return join(cellDir(paths, cell), 'egress');
}

/** The runs of a cell whose agentcell process is alive now, oldest first. */
export function liveRuns(paths: AgentcellPaths, cell: string): string[] {
  return listJournal(cellDir(paths, cell))
    .entries.filter((entry) => isProcessAlive(entry.owner))
    .map((entry) => entry.id)
    .sort();
}

/** The run ids a `egress log` reads, oldest first; an unknown `--run` is an error. */
export function chooseEgressRuns(paths: AgentcellPaths, cell: string, choice: EgressLogChoice): string[] {
  const logged = listEgressLogs(cellEgressDir(paths, cell));
  if (choice.run !== undefined) {
    if (!isReceiptId(choice.run))
      throw new AgentcellError('USAGE', `--run ${choice.run}: expected a run id (r-…), see agentcell receipt list`);
    if (!logged.includes(choice.run) && !liveRuns(paths, cell).includes(choice.run))
      throw new AgentcellError(
        'RECEIPT_NOT_FOUND',
        `run ${choice.run} of cell ${cell} has no egress log (only --network allowlist or learn runs have one)`,
      );
    return [choice.run];
  }
  if (choice.all) return logged;
  const live = liveRuns(paths, cell).at(-1);
  const latest = live ?? logged.at(-1);
  return latest === undefined ? [] : [latest];
}

/** The events of the chosen runs, in order. */
export function readCellEgress(paths: AgentcellPaths, cell: string, choice: EgressLogChoice): EgressLogChunk {
  const dir = cellEgressDir(paths, cell);
  const chunks = chooseEgressRuns(paths, cell, choice).map((run) => readEgressLog(egressLogPath(dir, run)));
  return { events: chunks.flatMap((c) => c.events), lines: chunks.flatMap((c) => c.lines) };
}

/**
 * Follows one run's egress log until that run ends. Without `run`, it follows the cell's
 * live run, or waits for the next one to start (the log appears when its gateway does).
 */
export async function followCellEgress(
  paths: AgentcellPaths,
  cell: string,
  options: { run?: string; onChunk: (chunk: EgressLogChunk) => void; signal?: AbortSignal; pollMs?: number },
): Promise<void> {
  const pollMs = options.pollMs ?? 100;
  let run = options.run;
  if (run !== undefined) chooseEgressRuns(paths, cell, { run });
  while (run === undefined) {
    run = liveRuns(paths, cell).at(-1);
    if (run !== undefined || options.signal?.aborted) break;
    await sleep(pollMs, undefined, { signal: options.signal }).catch(() => undefined);
  }
  if (run === undefined) return;
  const followed = run;
  await followEgressLog(egressLogPath(cellEgressDir(paths, cell), followed), {
    running: () => liveRuns(paths, cell).includes(followed),
    onChunk: options.onChunk,
    pollMs,
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
