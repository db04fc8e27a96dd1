import { randomInt } from 'node:crypto';
import * as z from 'zod/mini';
import { AssuranceSchema } from '../policy/assurance.js';
import { MODES, WORKSPACE_MODES } from '../_internal/vocabulary.js';
import { describeIssues } from '../_internal/state-file.js';

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
export const RECEIPT_KINDS = ['run', 'decision'] as const;
export const RUN_STATUSES = ['completed', 'interrupted'] as const;
/** A bound of `[resources]` that ended a run. */
export const LIMITS_HIT = ['disk', 'memory', 'pids', 'timeout'] as const;
export const DECISIONS = ['pending', 'accepted', 'restored', 'forked'] as const;
export type ReceiptKind = (typeof RECEIPT_KINDS)[number];
export type RunStatus = (typeof RUN_STATUSES)[number];
export type LimitHit = (typeof LIMITS_HIT)[number];
export type Decision = (typeof DECISIONS)[number];

const ID_PATTERN = /^r-[0-9a-z]{9}[0-9a-z]{8}$/;

const isoDate = z.string().check(z.refine((v) => !Number.isNaN(Date.parse(v)), 'an ISO date'));
const count = z.int().check(z.gte(0));
const strings = z.array(z.string());

export const ReceiptSignatureSchema = z.strictObject({
  alg: z.literal('ed25519'),
  /** First 16 hex digits of sha256 of the signing public key (SPKI DER). */
  keyId: z.string(),
  /** base64 ed25519 signature over canonicalJson(receipt without `signature`). */
  value: z.string(),
});
export type ReceiptSignature = z.infer<typeof ReceiptSignatureSchema>;

/** Host patterns, deny patterns and `name=IP` resolve entries, as the policy spells them. */
const EgressRuleEntriesSchema = z.strictObject({ allow: strings, deny: strings, resolve: strings });
export type EgressRuleEntries = z.infer<typeof EgressRuleEntriesSchema>;

/**
 * One `agentcell allow` applied to the running cell: when, who asked (the host-side
 * requester; the control socket is never reachable from the cell), the merged policy's
 * hash after it, and what it widened (`added.allow`, `removed.deny`) or narrowed.
 */
const EgressReloadSchema = z.strictObject({
  /** ISO 8601. */
  time: isoDate,
  /** The host user and agentcell process that asked, as that process reported them. */
  by: z.strictObject({ user: z.string(), pid: z.int() }),
  /** `sha256:` hash of the merged policy after the reload (the receipt's `policy.hash` is the one the run started with). */
  policyHash: z.string(),
  /** The policy files read, lowest precedence first. */
  files: strings,
  added: EgressRuleEntriesSchema,
  removed: EgressRuleEntriesSchema,
  /** Open connections the narrowed rules closed. */
  revoked: z.int(),
});
export type EgressReload = z.infer<typeof EgressReloadSchema>;

/** Decision counts; `reloads` only when the allowlists were reloaded during the run. */
const EgressSummarySchema = z.strictObject({
  allowed: count,
  denied: count,
  reloads: z.optional(z.array(EgressReloadSchema)),
});
export type EgressSummary = z.infer<typeof EgressSummarySchema>;

/**
 * One signed, chained record per run or decision (DESIGN: Receipt): the one definition
 * of a receipt, checked when one is written and whenever one is read. Strict at every
 * level: a field this version does not know could not be shown or vouched for, so it
 * makes the receipt malformed rather than silently dropped.
 */
const ReceiptFields = z.strictObject({
  /** Time-sortable, unique: `r-` + base36 milliseconds + random (see newReceiptId). */
  id: z.string().check(z.regex(ID_PATTERN)),
  kind: z.enum(RECEIPT_KINDS),
  /** For `kind: 'decision'`: the id of the run receipt decided. */
  decides: z.optional(z.string()),
  cell: z.string(),
  /** 1, 2, 3… within the cell's chain, without gaps. */
  seq: z.int().check(z.gte(1)),
  /** `sha256:` + hash of the previous receipt in this cell's chain; null for seq 1. */
  prev: z.nullable(z.string().check(z.regex(/^sha256:[0-9a-f]{64}$/))),
  /** argv of the command run in the cell (for a decision: agentcell's argv). */
  command: strings,
  /** null when the command never reported one (interrupted runs). */
  exitCode: z.nullable(z.int()),
  /** ISO 8601. */
  startedAt: isoDate,
  /** ISO 8601; for an interrupted run, the last sign of life agentcell saw. */
  endedAt: isoDate,
  durationMs: z.number().check(z.gte(0)),
  status: z.enum(RUN_STATUSES),
  decision: z.enum(DECISIONS),
  policy: z.strictObject({ hash: z.string(), mode: z.enum(MODES) }),
  /** The label (`level`) and the reasons it is lowered. */
  assurance: AssuranceSchema,
  backend: z.strictObject({ name: z.string(), version: z.string() }),
  /** Only for image-based cells. */
  image: z.optional(z.strictObject({ ref: z.string(), digest: z.string() })),
  workspace: z.strictObject({
    path: z.string(),
    mode: z.enum(WORKSPACE_MODES),
    gitRef: z.nullable(z.string()),
    gitDirty: z.nullable(z.boolean()),
  }),
  checkpoint: z.strictObject({ before: z.nullable(z.string()), after: z.nullable(z.string()) }),
  changes: z.strictObject({ added: count, modified: count, deleted: count }),
  egress: EgressSummarySchema,
  mounts: z.array(z.strictObject({ source: z.string(), target: z.string(), mode: z.enum(['ro', 'rw']) })),
  /** Names only, never values. */
  env: strings,
  /** Tool name → version (agent CLI, backend, engine…). */
  tools: z.record(z.string(), z.string()),
  /** Phase → milliseconds. */
  timings: z.record(z.string(), z.number()),
  /** Only when a bound of `[resources]` ended the run: which, and what agentcell saw. */
  limit: z.optional(z.strictObject({ hit: z.enum(LIMITS_HIT), detail: z.string() })),
  /**
   * Only on a partial accept (`accept PATH…`, `--exclude`): the paths it applied. The other
   * pending changes stay in the cell, undecided; without it a decision covers them all.
   */
  scope: z.optional(z.strictObject({ paths: z.array(z.string()) })),
  /** The enforcement canaries' results before the command (src/evidence/canaries.ts). */
  enforcement: z.optional(
    z.array(
      z.strictObject({
        probe: z.string(),
        result: z.enum(['blocked', 'through', 'skipped', 'inconclusive']),
        detail: z.string(),
      }),
    ),
  ),
  /** `sha256:` of the canonical JSON of the host and cell fingerprint the run had (agentcell fingerprint --json). */
  fingerprint: z.optional(z.string().check(z.regex(/^sha256:[0-9a-f]{64}$/))),
  /** Only for a session's run: what its terminal printed (the stored transcript's sha256 and size). */
  transcript: z.optional(z.strictObject({ sha256: z.string(), bytes: z.number() })),
  /**
   * Only for a run whose LLM requests the gateway inspected: a checkpoint of the run's
   * layer as each request started (`restore --to turn:N`), its layer-hash.ts content hash
   * (null where a cap or the host's access skipped it, with why).
   */
  turns: z.optional(
    z.array(
      z.strictObject({
        turn: z.int().check(z.gte(1)),
        at: isoDate,
        contentHash: z.nullable(z.string()),
        skipped: z.optional(z.string()),
      }),
    ),
  ),
  signature: ReceiptSignatureSchema,
});

export const ReceiptSchema = ReceiptFields.check(
  z.superRefine((r, ctx) => {
    if ((r.kind === 'decision') !== (r.decides !== undefined))
      ctx.issues.push({
        code: 'custom',
        path: ['decides'],
        message: r.kind === 'decision' ? 'a decision names the run it decides' : 'a run decides nothing',
        input: r.decides,
      });
  }),
);
export type Receipt = z.infer<typeof ReceiptSchema>;
export type MountMode = Receipt['mounts'][number]['mode'];

/**
 * The fields of a run's receipt known before it starts (the run journal holds them;
 * the rest come from its result).
 */
export const RunDraftSchema = z.omit(ReceiptFields, {
  id: true,
  kind: true,
  decides: true,
  cell: true,
  seq: true,
  prev: true,
  exitCode: true,
  startedAt: true,
  endedAt: true,
  durationMs: true,
  status: true,
  decision: true,
  signature: true,
  scope: true,
});

/** A receipt before it is signed. */
export type UnsignedReceipt = Omit<Receipt, 'signature'>;

/**
 * What a caller hands to `appendReceipt`: the store fills in `cell`, `seq`, `prev`
 * and `signature`, and `id` when it is missing.
 */
export type ReceiptDraft = Omit<UnsignedReceipt, 'id' | 'cell' | 'seq' | 'prev'> & { id?: string };

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
    if (r.kind !== 'decision' || r.seq <= run.seq || r.decides === undefined || r.scope !== undefined) continue;
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
  /** A partial accept: the paths applied (see Receipt.scope). */
  scope?: string[];
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
  if (input.scope !== undefined) draft.scope = { paths: [...input.scope] };
  return draft;
}

/**
 * What is wrong with the shape of a value read from disk as a receipt, in words, or
 * undefined when it is well-formed. Content integrity is the signature's job; this
 * keeps renderers and the chain check from tripping over a mangled file.
 */
export function receiptShapeProblem(value: unknown): string | undefined {
  const result = ReceiptSchema.safeParse(value, { reportInput: true });
  return result.success ? undefined : describeIssues(result.error.issues);
}
