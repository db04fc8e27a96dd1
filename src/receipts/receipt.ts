import { randomInt } from 'node:crypto';
import type { Assurance } from '../policy/assurance.js';
import type { Mode, WorkspaceMode } from '../policy/schema.js';

/**
 * What a receipt records about the command: a `run` is a command executed in the
 * cell; a `decision` is the reviewer's accept / restore / fork of what runs changed.
 *
 * Decisions are receipts too, in the same signed chain as the runs they decide, so
 * the chain alone tells the whole story and a decision can't be dropped or rewritten
 * without breaking it. A run's own receipt is never rewritten once signed: it keeps
 * `decision: 'pending'`, and the decision that followed is found with
 * {@link decisionFor}. A decision receipt:
 * - has `kind: 'decision'`, `decides` = the id of the newest run it covers (an accept
 *   or restore covers every undecided run before it in the chain, since runs stack
 *   their changes in the cell), and `decision` = what was decided;
 * - describes the agentcell command that decided: `command` is agentcell's argv,
 *   `exitCode` 0, `status` 'completed', `changes` what was applied or dropped,
 *   `checkpoint` the layer before and after the decision;
 * - copies `policy`, `assurance`, `backend`, `image`, `workspace`, `mounts`, `env` and
 *   `tools` from the run it decides (see {@link decisionDraft}); `egress` is zero.
 */
export type ReceiptKind = 'run' | 'decision';
export type RunStatus = 'completed' | 'interrupted';
export type Decision = 'pending' | 'accepted' | 'restored' | 'forked';
export type MountMode = 'ro' | 'rw';

export const RECEIPT_KINDS: readonly ReceiptKind[] = ['run', 'decision'];
export const RUN_STATUSES: readonly RunStatus[] = ['completed', 'interrupted'];

/** A bound of `[resources]` that ended a run. */
export type LimitHit = 'disk' | 'memory' | 'pids' | 'timeout';
export const LIMITS_HIT: readonly LimitHit[] = ['disk', 'memory', 'pids', 'timeout'];
export const DECISIONS: readonly Decision[] = ['pending', 'accepted', 'restored', 'forked'];

export interface ReceiptSignature {
  alg: 'ed25519';
  /** First 16 hex digits of sha256 of the signing public key (SPKI DER). */
  keyId: string;
  /** base64 ed25519 signature over canonicalJson(receipt without `signature`). */
  value: string;
}

/** One signed, chained record per run or decision (DESIGN: Receipt). */
export interface Receipt {
  /** Time-sortable, unique: `r-` + base36 milliseconds + random (see newReceiptId). */
  id: string;
  kind: ReceiptKind;
  /** For `kind: 'decision'`: the id of the run receipt decided. */
  decides?: string;
  cell: string;
  /** 1, 2, 3… within the cell's chain, without gaps. */
  seq: number;
  /** `sha256:` + hash of the previous receipt in this cell's chain; null for seq 1. */
  prev: string | null;
  /** argv of the command run in the cell (for a decision: agentcell's argv). */
  command: string[];
  /** null when the command never reported one (interrupted runs). */
  exitCode: number | null;
  /** ISO 8601. */
  startedAt: string;
  /** ISO 8601; for an interrupted run, the last sign of life agentcell saw. */
  endedAt: string;
  durationMs: number;
  status: RunStatus;
  decision: Decision;
  policy: { hash: string; mode: Mode };
  /** The label (`level`) and the reasons it is lowered. */
  assurance: Assurance;
  backend: { name: string; version: string };
  /** Only for image-based cells. */
  image?: { ref: string; digest: string };
  workspace: { path: string; mode: WorkspaceMode; gitRef: string | null; gitDirty: boolean | null };
  checkpoint: { before: string | null; after: string | null };
  changes: { added: number; modified: number; deleted: number };
  egress: EgressSummary;
  mounts: { source: string; target: string; mode: MountMode }[];
  /** Names only, never values. */
  env: string[];
  /** Tool name → version (agent CLI, backend, engine…). */
  tools: Record<string, string>;
  /** Phase → milliseconds. */
  timings: Record<string, number>;
  /** Only when a bound of `[resources]` ended the run: which, and what agentcell saw. */
  limit?: { hit: LimitHit; detail: string };
  /** Enforcement canaries: what each probe of the cell's boundary found before the command (src/evidence/canaries.ts). */
  enforcement?: { probe: string; result: string; detail: string }[];
  /** `sha256:` of the canonical JSON of the host and cell fingerprint the run had (agentcell fingerprint --json). */
  fingerprint?: string;
  signature: ReceiptSignature;
}

/** Host patterns, deny patterns and `name=IP` resolve entries, as the policy spells them. */
export interface EgressRuleEntries {
  allow: string[];
  deny: string[];
  resolve: string[];
}

/**
 * One `agentcell allow` applied to the running cell: when, who asked (the host-side
 * requester; the control socket is never reachable from the cell), the merged policy's
 * hash after it, and what it widened (`added.allow`, `removed.deny`) or narrowed.
 */
export interface EgressReload {
  /** ISO 8601. */
  time: string;
  /** The host user and agentcell process that asked, as that process reported them. */
  by: { user: string; pid: number };
  /** `sha256:` hash of the merged policy after the reload (the receipt's `policy.hash` is the one the run started with). */
  policyHash: string;
  /** The policy files read, lowest precedence first. */
  files: string[];
  added: EgressRuleEntries;
  removed: EgressRuleEntries;
  /** Open connections the narrowed rules closed. */
  revoked: number;
}

/** Decision counts; `reloads` only when the allowlists were reloaded during the run. */
export interface EgressSummary {
  allowed: number;
  denied: number;
  reloads?: EgressReload[];
}

/** A receipt before it is signed. */
export type UnsignedReceipt = Omit<Receipt, 'signature'>;

/**
 * What a caller hands to `appendReceipt`: the store fills in `cell`, `seq`, `prev`
 * and `signature`, and `id` when it is missing.
 */
export type ReceiptDraft = Omit<UnsignedReceipt, 'id' | 'cell' | 'seq' | 'prev'> & { id?: string };

const ID_PATTERN = /^r-[0-9a-z]{9}[0-9a-z]{8}$/;

/**
 * `r-` + 9 base36 digits of epoch milliseconds (fixed width, so ids sort by time
 * until the year 5188) + 8 random base36 digits.
 */
export function newReceiptId(now: Date = new Date()): string {
  const time = Math.max(0, now.getTime()).toString(36).padStart(9, '0');
  let suffix = '';
  while (suffix.length < 8) suffix += randomInt(36).toString(36);
  return `r-${time}${suffix}`;
}

export function isReceiptId(value: string): boolean {
  return ID_PATTERN.test(value);
}

/**
 * The decision a run ended up with: the first accept or restore after it in the chain
 * that covers it (a decision covers every undecided run before the run it decides), or
 * `forked` when the run was only forked, or `pending` when nothing was decided. A fork
 * copies a cell's changes; it does not settle them, so a later accept still counts.
 */
export function decisionFor(receipts: readonly Receipt[], runId: string): Decision {
  const seqOf = new Map(receipts.map((r) => [r.id, r.seq]));
  const run = receipts.find((r) => r.id === runId);
  if (!run) return 'pending';
  if (run.kind === 'decision') return run.decision;
  let forked = false;
  for (const r of receipts) {
    if (r.kind !== 'decision' || r.seq <= run.seq || r.decides === undefined) continue;
    const decidedSeq = seqOf.get(r.decides);
    if (decidedSeq === undefined || decidedSeq < run.seq) continue;
    if (r.decision === 'forked') forked = true;
    else if (r.decision === 'restored' && keptBy(receipts, run, r)) continue;
    else return r.decision;
  }
  return forked ? 'forked' : 'pending';
}

/**
 * Whether `restore --to K` (`checkpoint.after` = K, the newest layer kept) left `run`'s
 * changes in the cell: they are below K when the run ended before K was on top, i.e. it
 * came before the first run that started on K (`checkpoint.before` = K), or, when no run
 * started on K, it is not after the last run that made K (`checkpoint.after` = K).
 * A full restore (K null) keeps nothing.
 */
function keptBy(receipts: readonly Receipt[], run: Receipt, restore: Receipt): boolean {
  const kept = restore.checkpoint.after;
  if (kept === null) return false;
  const runs = receipts.filter((r) => r.kind === 'run' && r.seq < restore.seq);
  const startedOn = runs.find((r) => r.checkpoint.before === kept);
  if (startedOn) return run.seq < startedOn.seq;
  const made = runs.filter((r) => r.checkpoint.after === kept).at(-1);
  return made !== undefined && run.seq <= made.seq;
}

export interface DecisionInput {
  decision: Exclude<Decision, 'pending'>;
  /** agentcell's own argv, e.g. ['agentcell', 'accept']. */
  command: string[];
  startedAt: string;
  endedAt: string;
  changes?: Receipt['changes'];
  checkpoint?: Receipt['checkpoint'];
  timings?: Record<string, number>;
  id?: string;
}

/** A decision receipt's draft, describing the environment of the run it decides. */
export function decisionDraft(decided: Receipt, input: DecisionInput): ReceiptDraft {
  const draft: ReceiptDraft = {
    kind: 'decision',
    decides: decided.id,
    command: [...input.command],
    exitCode: 0,
    startedAt: input.startedAt,
    endedAt: input.endedAt,
    durationMs: Math.max(0, Date.parse(input.endedAt) - Date.parse(input.startedAt)),
    status: 'completed',
    decision: input.decision,
    policy: { ...decided.policy },
    assurance: { ...decided.assurance, reasons: [...decided.assurance.reasons] },
    backend: { ...decided.backend },
    workspace: { ...decided.workspace },
    checkpoint: input.checkpoint ?? { before: decided.checkpoint.after, after: null },
    changes: input.changes ?? { added: 0, modified: 0, deleted: 0 },
    egress: { allowed: 0, denied: 0 },
    mounts: decided.mounts.map((m) => ({ ...m })),
    env: [...decided.env],
    tools: { ...decided.tools },
    timings: { ...(input.timings ?? {}) },
  };
  if (decided.image) draft.image = { ...decided.image };
  if (input.id !== undefined) draft.id = input.id;
  return draft;
}

/**
 * What is wrong with the shape of a value read from disk as a receipt, one line per
 * problem (empty when it is well-formed). Content integrity is the signature's job;
 * this keeps renderers and the chain check from tripping over a mangled file.
 */
export function receiptShapeProblems(value: unknown): string[] {
  if (!isRecord(value)) return ['not a JSON object'];
  const problems: string[] = [];
  const need = (key: string, ok: (v: unknown) => boolean, what: string): void => {
    if (!ok(value[key])) problems.push(`${key}: expected ${what}`);
  };
  need('id', (v) => typeof v === 'string' && isReceiptId(v), 'a receipt id (r-…)');
  need('kind', (v) => RECEIPT_KINDS.includes(v as ReceiptKind), 'run or decision');
  if (value['kind'] === 'decision') need('decides', isString, 'the decided run id');
  else need('decides', (v) => v === undefined, 'no decides on a run');
  need('cell', isString, 'a cell name');
  need('seq', (v) => Number.isSafeInteger(v) && (v as number) >= 1, 'an integer >= 1');
  need('prev', (v) => v === null || (typeof v === 'string' && /^sha256:[0-9a-f]{64}$/.test(v)), 'null or sha256:…');
  need('command', (v) => Array.isArray(v) && v.every(isString), 'an array of strings');
  need('exitCode', (v) => v === null || Number.isInteger(v), 'an integer or null');
  need('startedAt', isIsoDate, 'an ISO date');
  need('endedAt', isIsoDate, 'an ISO date');
  need('durationMs', (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0, 'a number >= 0');
  need('status', (v) => RUN_STATUSES.includes(v as RunStatus), 'completed or interrupted');
  need(
    'limit',
    (v) => v === undefined || (isRecord(v) && LIMITS_HIT.includes(v['hit'] as LimitHit) && isString(v['detail'])),
    '{hit: disk, memory, pids or timeout, detail}',
  );
  need(
    'enforcement',
    (v) =>
      v === undefined ||
      (Array.isArray(v) &&
        v.every((p) => isRecord(p) && isString(p['probe']) && isString(p['result']) && isString(p['detail']))),
    '[{probe, result, detail}]',
  );
  need('fingerprint', (v) => v === undefined || (typeof v === 'string' && /^sha256:[0-9a-f]{64}$/.test(v)), 'sha256:…');
  need('decision', (v) => DECISIONS.includes(v as Decision), 'pending, accepted, restored or forked');
  need('policy', (v) => isRecord(v) && isString(v['hash']) && isString(v['mode']), '{hash, mode}');
  need(
    'assurance',
    (v) => isRecord(v) && isString(v['level']) && Array.isArray(v['reasons']) && v['reasons'].every(isString),
    '{mode, level, reasons}',
  );
  need('backend', (v) => isRecord(v) && isString(v['name']) && isString(v['version']), '{name, version}');
  need(
    'image',
    (v) => v === undefined || (isRecord(v) && isString(v['ref']) && isString(v['digest'])),
    '{ref, digest}',
  );
  need(
    'workspace',
    (v) =>
      isRecord(v) &&
      isString(v['path']) &&
      isString(v['mode']) &&
      (v['gitRef'] === null || isString(v['gitRef'])) &&
      (v['gitDirty'] === null || typeof v['gitDirty'] === 'boolean'),
    '{path, mode, gitRef, gitDirty}',
  );
  need(
    'checkpoint',
    (v) => isRecord(v) && isNullableString(v['before']) && isNullableString(v['after']),
    '{before, after}',
  );
  need('changes', (v) => hasCounts(v, ['added', 'modified', 'deleted']), '{added, modified, deleted} counts');
  need('egress', (v) => hasCounts(v, ['allowed', 'denied']), '{allowed, denied} counts');
  need(
    'egress',
    (v) => !isRecord(v) || v['reloads'] === undefined || (Array.isArray(v['reloads']) && v['reloads'].every(isReload)),
    'reloads: [{time, by, policyHash, files, added, removed, revoked}]',
  );
  need(
    'mounts',
    (v) =>
      Array.isArray(v) &&
      v.every((m) => isRecord(m) && isString(m['source']) && isString(m['target']) && isString(m['mode'])),
    '[{source, target, mode}]',
  );
  need('env', (v) => Array.isArray(v) && v.every(isString), 'an array of names');
  need('tools', (v) => isRecord(v) && Object.values(v).every(isString), 'name → version strings');
  need('timings', (v) => isRecord(v) && Object.values(v).every((n) => typeof n === 'number'), 'phase → ms');
  need(
    'signature',
    (v) => isRecord(v) && v['alg'] === 'ed25519' && isString(v['keyId']) && isString(v['value']),
    '{alg: ed25519, keyId, value}',
  );
  return problems;
}

function isReload(v: unknown): boolean {
  const isStrings = (x: unknown): boolean => Array.isArray(x) && x.every(isString);
  const isEntries = (x: unknown): boolean =>
    isRecord(x) && isStrings(x['allow']) && isStrings(x['deny']) && isStrings(x['resolve']);
  return (
    isRecord(v) &&
    isIsoDate(v['time']) &&
    isRecord(v['by']) &&
    isString(v['by']['user']) &&
    Number.isSafeInteger(v['by']['pid']) &&
    isString(v['policyHash']) &&
    isStrings(v['files']) &&
    isEntries(v['added']) &&
    isEntries(v['removed']) &&
    Number.isSafeInteger(v['revoked'])
  );
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function isString(v: unknown): v is string {
  return typeof v === 'string';
}

function isNullableString(v: unknown): boolean {
  return v === null || typeof v === 'string';
}

function isIsoDate(v: unknown): boolean {
  return typeof v === 'string' && !Number.isNaN(Date.parse(v));
}

function hasCounts(v: unknown, keys: string[]): boolean {
  return isRecord(v) && keys.every((k) => Number.isSafeInteger(v[k]) && (v[k] as number) >= 0);
}
