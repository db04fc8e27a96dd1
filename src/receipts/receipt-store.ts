import { AgentcellError } from '../errors.js';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { sha256 } from '../_internal/canonical-hash.js';
import { createFileAtomic, ensureDir } from '../_internal/atomic-file.js';
import { acquireFileLock } from '../_internal/file-lock.js';
import { parseStateFile, stateFileText, type StateFileKind } from '../_internal/state-file.js';
import {
  isReceiptId,
  newReceiptId,
  receiptShapeProblem,
  ReceiptSchema,
  type Receipt,
  type ReceiptDraft,
} from './receipt.js';
import {
  receiptHash,
  signReceipt,
  verifyReceipts,
  type ChainProblem,
  type ChainVerification,
} from './receipt-chain.js';
import type { PublicKeyRing, SigningKey } from './signing-key.js';
import { anchorPathForKey, anchorProblems, anchorSignatureProblem, readAnchor, writeAnchor } from './chain-anchor.js';

/** Where one cell's receipts go and the key that signs them. */
export interface ReceiptStore {
  /** `<state>/cells/<cell>`. */
  cellDir: string;
  cell: string;
  key: SigningKey;
  /** The chain's anchor file, outside the cell's state dir (see chain-anchor.ts). */
  anchor: string;
}

export function receiptStore(
  cellDir: string,
  key: SigningKey,
  cell: string = basename(cellDir),
  anchor: string = anchorPathForKey(key, cellDir, cell),
): ReceiptStore {
  return { cellDir, cell, key, anchor };
}

export function receiptsDir(cellDir: string): string {
  return join(cellDir, 'receipts');
}

/** `000042-r-….json`: seq (6 digits, more past 999999) then id. */
const FILE_NAME = /^(\d{6,})-(r-[0-9a-z]{17})\.json$/;

export function receiptFileName(seq: number, id: string): string {
  return `${String(seq).padStart(6, '0')}-${id}.json`;
}

/** A receipt file as found on disk, before its content is trusted. */
export interface ReceiptFile {
  name: string;
  path: string;
  /** seq and id as the file name says. */
  seq: number;
  id: string;
}

/** The receipt files of a cell in chain order (by the seq in their names). */
export function listReceiptFiles(cellDir: string): ReceiptFile[] {
  return receiptFiles(cellDir).sort(chainOrder);
}

/** The receipt files of a cell, unordered; a cell keeps every receipt, so this is O(receipts) and kept lean. */
function receiptFiles(cellDir: string): ReceiptFile[] {
  const dir = receiptsDir(cellDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const files: ReceiptFile[] = [];
  for (const name of names) {
    const match = FILE_NAME.exec(name);
    // A file name has no slash: no path.join (its normalising costs more than the rest per file).
    if (match) files.push({ name, path: `${dir}/${name}`, seq: Number(match[1]), id: match[2] ?? '' });
  }
  return files;
}

function chainOrder(a: ReceiptFile, b: ReceiptFile): number {
  return a.seq - b.seq || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** Every receipt of the cell in chain order. Throws on a file that is not a receipt; `verifyCell` reports instead. */
export function listReceipts(cellDir: string): Receipt[] {
  return listReceiptFiles(cellDir).map(readReceiptFile);
}

/** The cell's receipts, newest first, each read only when asked for: the recent past costs what it is, not the chain. */
export function* receiptsNewestFirst(cellDir: string): Generator<Receipt> {
  const files = listReceiptFiles(cellDir);
  for (let i = files.length - 1; i >= 0; i--) yield readReceiptFile(files[i]!);
}

/**
 * The receipts whose file names carry an id `wanted` accepts, in chain order; the other
 * files are not read, so looking up a few runs costs those runs, not the cell's history.
 * A file whose content names another id than its name is returned as it reads: callers
 * match on the content's id.
 */
export function receiptsNamed(cellDir: string, wanted: (id: string) => boolean): Receipt[] {
  return listReceiptFiles(cellDir)
    .filter((file) => wanted(file.id))
    .map(readReceiptFile);
}

export function latestReceipt(cellDir: string): Receipt | null {
  const last = listReceiptFiles(cellDir).at(-1);
  return last ? readReceiptFile(last) : null;
}

/**
 * One receipt by id, by a unique prefix of its id (with or without `r-`), or by its
 * seq number (`3`).
 */
export function readReceipt(cellDir: string, ref: string): Receipt {
  const files = listReceiptFiles(cellDir);
  const trimmed = ref.trim();
  let matches: ReceiptFile[];
  if (/^\d+$/.test(trimmed)) matches = files.filter((f) => f.seq === Number(trimmed));
  else {
    const prefix = trimmed.startsWith('r-') ? trimmed : `r-${trimmed}`;
    matches = trimmed === '' ? [] : files.filter((f) => f.id.startsWith(prefix));
    const exact = matches.filter((f) => f.id === prefix);
    if (exact.length > 0) matches = exact;
  }
  const [only] = matches;
  if (only && matches.length === 1) return readReceiptFile(only);
  const cell = basename(cellDir);
  if (matches.length === 0)
    throw new AgentcellError(
      'RECEIPT_NOT_FOUND',
      `no receipt "${ref}" in cell "${cell}"; see agentcell receipt list --cell ${cell}`,
    );
  throw new AgentcellError(
    'RECEIPT_NOT_FOUND',
    `"${ref}" matches ${matches.length} receipts in cell "${cell}" (${matches.map((f) => f.id).join(', ')}); give more of the id`,
  );
}

/** A receipt file; damaged is RECEIPT_INVALID, the code receipt errors always had. */
const RECEIPT_FILE: StateFileKind<typeof ReceiptSchema> = {
  schema: ReceiptSchema,
  what: 'a receipt',
  code: 'RECEIPT_INVALID',
  fix: () =>
    'Restore it from a backup; agentcell receipt verify shows what the chain lost. Runs go on being receipted after it.',
};

function readReceiptFile(file: ReceiptFile): Receipt {
  return parseStateFile(file.path, readFileSync(file.path, 'utf8'), RECEIPT_FILE);
}

/**
 * Runs `fn` holding the cell's receipt lock (`receipts/.lock`), which every append
 * takes, so two processes never give out the same seq. It is held for milliseconds
 * and is separate from the cell lock a run holds, so appending under the cell lock
 * is fine.
 */
export async function withReceiptLock<T>(cellDir: string, fn: () => T | Promise<T>): Promise<T> {
  ensureDir(receiptsDir(cellDir), 0o700);
  const release = await acquireFileLock(join(receiptsDir(cellDir), '.lock'), {
    wait: true,
    timeoutMs: 60_000,
    what: `the receipts of cell "${basename(cellDir)}"`,
  });
  try {
    return await fn();
  } finally {
    release();
  }
}

export interface AppendOptions {
  /** When a receipt with the draft's id is already in the chain, return it instead of failing. */
  ifAbsent?: boolean;
}

/**
 * Signs `draft` as the next receipt of the cell (seq = last + 1, prev = hash of the
 * last) and writes `<seq>-<id>.json` whole (temp, fsync, link, fsync dir).
 */
export async function appendReceipt(
  store: ReceiptStore,
  draft: ReceiptDraft,
  options?: AppendOptions,
): Promise<Receipt> {
  return withReceiptLock(store.cellDir, () => appendReceiptLocked(store, draft, options));
}

/** appendReceipt for a caller already inside `withReceiptLock`. */
export function appendReceiptLocked(store: ReceiptStore, draft: ReceiptDraft, options: AppendOptions = {}): Receipt {
  // Every run appends: only the chain's end is needed, so no sort of the whole chain.
  const files = receiptFiles(store.cellDir);
  const id = draft.id ?? newReceiptId();
  if (!isReceiptId(id)) throw new AgentcellError('RECEIPT_INVALID', `"${id}" is not a receipt id`);
  const existing = files.find((f) => f.id === id);
  if (existing) {
    if (options.ifAbsent) return readReceiptFile(existing);
    throw new AgentcellError('RECEIPT_INVALID', `receipt ${id} is already in cell "${store.cell}"`);
  }
  const last = files.reduce<ReceiptFile | undefined>((end, f) => (end && chainOrder(end, f) >= 0 ? end : f), undefined);
  const seq = last ? last.seq + 1 : 1;
  const prev = last ? hashOfFile(last, store.cell) : null;
  const breaks = anchorBreaks(store, last, prev, seq);
  const receipt = signReceipt({ ...draft, id, cell: store.cell, seq, prev }, store.key);
  const path = join(receiptsDir(store.cellDir), receiptFileName(seq, id));
  if (!createFileAtomic(path, stateFileText(path, RECEIPT_FILE, receipt), 0o600))
    throw new AgentcellError('RECEIPT_INVALID', `${path} already exists`);
  writeAnchor(
    store.anchor,
    { version: 1, cell: store.cell, seq, head: receiptHash(receipt), headId: id, breaks },
    store.key,
  );
  return receipt;
}

/**
 * What the anchor shows wrong with the chain about to be appended to, added to what it
 * already carried: the append must go on (every run leaves a receipt), and re-anchoring
 * the chain as found would hide a cut end, so the finding is signed into the new anchor
 * and `receipt verify` reports it from then on. No anchor with receipts present counts:
 * it can't be told from a deleted one.
 */
function anchorBreaks(store: ReceiptStore, last: ReceiptFile | undefined, prev: string | null, seq: number): string[] {
  const found = readAnchor(store.anchor);
  const at = (problem: string): string => `before receipt ${seq}: ${problem}`;
  if (found.kind === 'missing')
    return last ? [at(`no anchor for the ${last.seq} receipt(s) before it (deleted, or made before anchors)`)] : [];
  if (found.kind === 'invalid') return [at(found.why)];
  const { anchor } = found;
  const signature = anchorSignatureProblem(anchor, new Map([[store.key.keyId, store.key.publicKey]]));
  const end = last ? { seq: last.seq, head: prev ?? undefined, id: last.id } : undefined;
  const problems = signature ? [signature] : anchorProblems(anchor, end, last ? prevOfFile(last) : null);
  return [...(signature ? [] : anchor.breaks), ...problems.map(at)];
}

/** The `prev` recorded in a receipt file, or undefined when it can't be read. */
function prevOfFile(file: ReceiptFile): string | null | undefined {
  try {
    const value = JSON.parse(readFileSync(file.path, 'utf8')) as Record<string, unknown> | null;
    const prev = value?.['prev'];
    return typeof prev === 'string' || prev === null ? prev : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The hash the next receipt chains to. A last file that is not valid JSON is chained
 * by its raw bytes, so one damaged file never stops runs from being receipted
 * (`verifyCell` reports it).
 */
function hashOfFile(file: ReceiptFile, cell: string): string {
  const raw = readFileSync(file.path);
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    return `sha256:${sha256(raw)}`;
  }
  const found = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)['cell'] : undefined;
  if (typeof found === 'string' && found !== cell)
    throw new AgentcellError(
      'RECEIPT_INVALID',
      `${file.path} belongs to cell "${found}", not "${cell}": the receipt store was opened on the wrong directory`,
    );
  return receiptHash(value as Receipt);
}

/**
 * `verifyReceipts` over a cell's files, plus what only the files show: a file that
 * is not JSON, or whose name disagrees with the seq and id inside it (moved, renamed
 * or swapped).
 */
export function verifyCell(
  cellDir: string,
  publicKeys: PublicKeyRing,
  options: { cell?: string; anchor?: string } = {},
): ChainVerification {
  const fileProblems: ChainProblem[] = [];
  const values: unknown[] = [];
  const files = listReceiptFiles(cellDir);
  for (const file of files) {
    let value: unknown;
    try {
      value = JSON.parse(readFileSync(file.path, 'utf8'));
    } catch {
      fileProblems.push({ id: file.id, seq: file.seq, problem: `${file.name} is not valid JSON` });
      continue;
    }
    const inside = value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
    if (inside['id'] !== file.id || inside['seq'] !== file.seq)
      fileProblems.push({
        id: typeof inside['id'] === 'string' ? inside['id'] : file.id,
        seq: typeof inside['seq'] === 'number' ? inside['seq'] : file.seq,
        problem: `file ${file.name} holds receipt ${String(inside['seq'])} (${String(inside['id'])}): moved, renamed or swapped`,
      });
    values.push(value);
  }
  const chain = verifyReceipts(values, publicKeys, { cell: options.cell ?? basename(cellDir) });
  const anchored = options.anchor === undefined ? [] : verifyAnchor(options.anchor, files, values, publicKeys);
  const problems = [...fileProblems, ...chain.problems, ...anchored].sort((a, b) => a.seq - b.seq);
  return { ok: problems.length === 0, checked: files.length, problems };
}

/**
 * The chain's end against its anchor. A missing anchor is a problem, not a warning, once
 * the cell has receipts: deleting it with the newest receipts would otherwise pass.
 */
function verifyAnchor(
  path: string,
  files: readonly ReceiptFile[],
  values: readonly unknown[],
  publicKeys: PublicKeyRing,
): ChainProblem[] {
  const last = files.at(-1);
  const label = { id: 'anchor', seq: (last?.seq ?? 0) + 1 };
  const found = readAnchor(path);
  if (found.kind === 'missing')
    return last
      ? [{ ...label, problem: `the chain's anchor ${path} is missing: receipts cut off the end can't be ruled out` }]
      : [];
  if (found.kind === 'invalid') return [{ ...label, problem: found.why }];
  const signature = anchorSignatureProblem(found.anchor, publicKeys);
  if (signature) return [{ ...label, problem: signature }];
  const lastValue = values.at(-1);
  const receipt = last && receiptShapeProblem(lastValue) === undefined ? (lastValue as Receipt) : undefined;
  const end = last ? { seq: last.seq, head: receipt ? receiptHash(receipt) : undefined, id: last.id } : undefined;
  return [...found.anchor.breaks, ...anchorProblems(found.anchor, end, receipt?.prev)].map((problem) => ({
    ...label,
    problem,
  }));
}
