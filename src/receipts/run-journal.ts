import { AgentcellError } from '../errors.js';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { ensureDir, removeQuietly } from '../_internal/atomic-file.js';
import {
  currentProcess,
  isProcessAlive,
  ProcessOwnerSchema,
  type ProcessOwner,
} from '../_internal/process-identity.js';
import { damagedStateFile, readStateFile, writeStateFile, type StateFileKind } from '../_internal/state-file.js';
import { isReceiptId, newReceiptId, RunDraftSchema, type Receipt, type ReceiptDraft } from './receipt.js';
import { appendReceiptLocked, withReceiptLock, type ReceiptStore } from './receipt-store.js';

/**
 * Crash safety for DESIGN invariant 6 (every run leaves a receipt, even when
 * agentcell is killed mid-run). Before the command starts, `beginRun` writes
 * `<cellDir>/runs/<id>.json` with what is known and who runs it; `finishRun` turns it
 * into a signed receipt and removes it. If agentcell dies in between, the entry
 * stays, and the next command's `recoverInterrupted` finds its process gone and
 * receipts the run as `interrupted`.
 *
 * Entries are written without fsync: they must survive agentcell being killed, which
 * the page cache does, and a machine crash ends the run's cell too. The receipt that
 * replaces an entry is durable.
 */
const JOURNAL_WRITE = { durable: false };

/** The receipt fields of a run known before it starts (the rest come from its result). */
export type RunDraft = z.infer<typeof RunDraftSchema>;

const RunJournalEntrySchema = z.strictObject({
  version: z.literal(1),
  id: z.string().check(z.refine(isReceiptId, 'a receipt id (r-…)')),
  startedAt: z.iso.datetime(),
  /** The agentcell process running it: pid, process start time, host. */
  owner: ProcessOwnerSchema,
  draft: RunDraftSchema,
});
export type RunJournalEntry = z.infer<typeof RunJournalEntrySchema>;

/**
 * A damaged entry is an error, never skipped: skipping it would leave a run that no
 * receipt ever records (DESIGN invariant 6), silently.
 */
const JOURNAL_FILE: StateFileKind<typeof RunJournalEntrySchema> = {
  schema: RunJournalEntrySchema,
  what: 'a run journal entry: a run not receipted yet',
  code: 'RECEIPT_INVALID',
  fix: (path) =>
    `Restore it from a backup; or, to go on without a receipt for that run, remove it: rm ${path} (a machine crash while a run started can leave one damaged)`,
};

/**
 * How a run ended. Any run field may be updated too; `timings` and `tools` are merged
 * into what the draft had.
 */
export type RunResult = Partial<RunDraft> & {
  exitCode: number | null;
  /** Default: now. */
  endedAt?: string;
};

export function runsDir(cellDir: string): string {
  return join(cellDir, 'runs');
}

function entryPath(cellDir: string, id: string): string {
  if (!isReceiptId(id)) throw new AgentcellError('RECEIPT_INVALID', `"${id}" is not a run id`);
  return join(runsDir(cellDir), `${id}.json`);
}

/** Records a run about to start; call before the command is spawned. */
export function beginRun(
  cellDir: string,
  draft: RunDraft,
  options: { id?: string; startedAt?: string; owner?: ProcessOwner } = {},
): RunJournalEntry {
  const startedAt = options.startedAt ?? new Date().toISOString();
  const entry: RunJournalEntry = {
    version: 1,
    id: options.id ?? newReceiptId(new Date(startedAt)),
    startedAt,
    owner: options.owner ?? currentProcess(),
    draft,
  };
  ensureDir(runsDir(cellDir), 0o700);
  // A damaged entry stops the run here, before it starts: later, its command would already have run.
  listJournal(cellDir);
  writeStateFile(entryPath(cellDir, entry.id), JOURNAL_FILE, entry, JOURNAL_WRITE);
  return entry;
}

/** Records what became known during a run (checkpoint, image digest, timings…), so an interrupted receipt has it. */
export function updateRun(cellDir: string, id: string, patch: Partial<RunDraft>): RunJournalEntry {
  const entry = readEntry(cellDir, id);
  const updated: RunJournalEntry = { ...entry, draft: mergeDraft(entry.draft, patch) };
  writeStateFile(entryPath(cellDir, id), JOURNAL_FILE, updated, JOURNAL_WRITE);
  return updated;
}

/** The runs of a cell that have begun and not been receipted yet; a damaged entry is an error. */
export function listJournal(cellDir: string): { entries: RunJournalEntry[] } {
  let names: string[];
  try {
    names = readdirSync(runsDir(cellDir));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [] };
    throw error;
  }
  const entries: RunJournalEntry[] = [];
  for (const name of names.sort()) {
    const id = /^(r-[0-9a-z]{17})\.json$/.exec(name)?.[1];
    const entry = id === undefined ? undefined : readStateFile(entryPath(cellDir, id), JOURNAL_FILE);
    if (entry) entries.push(entry); // undefined: receipted and removed since the listing
  }
  return { entries };
}

/** A begun run not receipted yet, as the read-only commands show it. */
export interface UnreceiptedRun {
  id: string;
  startedAt: string;
  command: string[];
  /** `running`: its agentcell is alive; `interrupted`: it was killed, and the next run or decision receipts it. */
  state: 'running' | 'interrupted';
}

/**
 * The cell's journal as `receipt list` and `diff` show it. These commands only read: a
 * killed run is shown at once as `interrupted` from its journal entry, and receipted by
 * the next command that changes the cell (a run or a decision), which also credits it
 * with the changes it left (freezing its upper layer, a change no reader should make).
 */
export function unreceiptedRuns(
  cellDir: string,
  isAlive: (owner: ProcessOwner) => boolean = isProcessAlive,
): UnreceiptedRun[] {
  return listJournal(cellDir).entries.map((e) => ({
    id: e.id,
    startedAt: e.startedAt,
    command: e.draft.command,
    state: isAlive(e.owner) ? 'running' : 'interrupted',
  }));
}

/** Signs the run's receipt (status `completed`) into the chain and removes its journal entry. */
export async function finishRun(store: ReceiptStore, id: string, result: RunResult): Promise<Receipt> {
  return withReceiptLock(store.cellDir, () => {
    const entry = readEntry(store.cellDir, id);
    const { exitCode, endedAt = new Date().toISOString(), ...patch } = result;
    const receipt = appendReceiptLocked(
      store,
      runReceiptDraft(entry, mergeDraft(entry.draft, patch), { status: 'completed', exitCode, endedAt }),
      { ifAbsent: true },
    );
    removeEntry(store.cellDir, id);
    return receipt;
  });
}

/**
 * Receipts, as `interrupted`, every begun run whose agentcell process is gone (dead,
 * a zombie, or its pid now belongs to a later process): exitCode null and endedAt the
 * journal entry's last update, the last time agentcell was seen alive. Safe to run
 * from several processes at once: each run is receipted exactly once.
 */
export async function recoverInterrupted(
  store: ReceiptStore,
  options: { isAlive?: (owner: ProcessOwner) => boolean } = {},
): Promise<{ recovered: Receipt[] }> {
  const isAlive = options.isAlive ?? isProcessAlive;
  const { entries } = listJournal(store.cellDir);
  const recovered: Receipt[] = [];
  for (const found of entries) {
    if (isAlive(found.owner)) continue;
    const receipt = await withReceiptLock(store.cellDir, () => {
      // Another process may have recovered it since we looked.
      let entry: RunJournalEntry;
      let lastSeen: Date;
      try {
        entry = readEntry(store.cellDir, found.id);
        lastSeen = statSync(entryPath(store.cellDir, found.id)).mtime;
      } catch {
        return null;
      }
      const endedAt = new Date(Math.max(lastSeen.getTime(), Date.parse(entry.startedAt))).toISOString();
      const r = appendReceiptLocked(
        store,
        runReceiptDraft(entry, entry.draft, { status: 'interrupted', exitCode: null, endedAt }),
        { ifAbsent: true },
      );
      removeEntry(store.cellDir, found.id);
      return r;
    });
    if (receipt?.status === 'interrupted') recovered.push(receipt); // not a finished run whose entry a crash brought back
  }
  return { recovered };
}

function runReceiptDraft(
  entry: RunJournalEntry,
  draft: RunDraft,
  end: { status: Receipt['status']; exitCode: number | null; endedAt: string },
): ReceiptDraft {
  return {
    ...draft,
    id: entry.id,
    kind: 'run',
    startedAt: entry.startedAt,
    endedAt: end.endedAt,
    durationMs: Math.max(0, Date.parse(end.endedAt) - Date.parse(entry.startedAt)),
    exitCode: end.exitCode,
    status: end.status,
    decision: 'pending',
  };
}

function mergeDraft(draft: RunDraft, patch: Partial<RunDraft>): RunDraft {
  const defined = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<RunDraft>;
  return {
    ...draft,
    ...defined,
    timings: { ...draft.timings, ...(patch.timings ?? {}) },
    tools: { ...draft.tools, ...(patch.tools ?? {}) },
  };
}

function readEntry(cellDir: string, id: string): RunJournalEntry {
  const entry = readStateFile(entryPath(cellDir, id), JOURNAL_FILE);
  if (!entry) throw new AgentcellError('RECEIPT_INVALID', `run ${id} has no journal entry in ${runsDir(cellDir)}`);
  if (entry.id !== id)
    throw damagedStateFile(entryPath(cellDir, id), JOURNAL_FILE, `id: expected ${id} (its file name), got ${entry.id}`);
  return entry;
}

/**
 * Not made durable either: an entry a crash brings back is receipted `ifAbsent`, which
 * finds the run's receipt already in the chain and only removes the entry.
 */
function removeEntry(cellDir: string, id: string): void {
  removeQuietly(entryPath(cellDir, id));
}
