import { sign, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import * as z from 'zod/mini';
import { AgentcellError } from '../errors.js';
import { canonicalJson, sha256 } from '../_internal/canonical-hash.js';
import { ensureDir } from '../_internal/atomic-file.js';
import { stateFileProblem, writeStateFile, type StateFileKind } from '../_internal/state-file.js';
import { ReceiptSignatureSchema } from './receipt.js';
import type { PublicKeyRing, SigningKey } from './signing-key.js';

/**
 * The head of a cell's receipt chain, kept outside the cell's state dir (beside the
 * signing key, under the config dir, which no cell ever mounts), so that receipts cut
 * off the end of the chain are seen: the chain alone can't show them (DESIGN: Evidence).
 * Written after each receipt, under the receipt lock; signed with the receipt key.
 */
export const ChainAnchorSchema = z.strictObject({
  version: z.literal(1),
  cell: z.string(),
  /** The seq of the newest receipt (= how many receipts the chain has). */
  seq: z.int().check(z.gte(0)),
  /** Hash of the newest receipt (its successor's `prev`). */
  head: z.string(),
  headId: z.string(),
  /** What an append found wrong with the chain before it (signed in, so a later append can't hide it). */
  breaks: z.array(z.string()),
  signature: ReceiptSignatureSchema,
});
export type ChainAnchor = z.infer<typeof ChainAnchorSchema>;

/**
 * Never an error on read: a damaged anchor is a finding `receipt verify` reports, and
 * the next append signs into the new anchor (see readAnchor), so runs go on.
 */
const ANCHOR_FILE: StateFileKind<typeof ChainAnchorSchema> = {
  schema: ChainAnchorSchema,
  what: "the receipt chain's anchor",
  fix: () => 'agentcell receipt verify reports it',
};

export type UnsignedAnchor = Omit<ChainAnchor, 'signature'>;

/** `<config>/anchors/<cell>-<hash of the cell's dir>.json`: one per cell incarnation place. */
export function anchorPath(configDir: string, cellDir: string, cell: string): string {
  return join(configDir, 'anchors', `${cell}-${sha256(resolve(cellDir)).slice(0, 12)}.json`);
}

/** The anchor path for a store whose key lives in `<config>/keys/` (a key held only in memory must be given one). */
export function anchorPathForKey(key: SigningKey, cellDir: string, cell: string): string {
  if (!isAbsolute(key.path))
    throw new AgentcellError(
      'INTERNAL',
      `the signing key ${key.path} has no config dir: give the receipt store an anchor path`,
    );
  return anchorPath(dirname(dirname(key.path)), cellDir, cell);
}

export type AnchorRead =
  { kind: 'missing' } | { kind: 'invalid'; why: string } | { kind: 'found'; anchor: ChainAnchor };

export function readAnchor(path: string): AnchorRead {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'invalid', why: `cannot read ${path}: ${String(error)}` };
  }
  return readAnchorText(text, path);
}

/** An anchor from its text (`label` names where it came from: a file, a bundle member). */
export function readAnchorText(text: string, label: string): AnchorRead {
  const found = stateFileProblem(text, ChainAnchorSchema);
  return found.ok
    ? { kind: 'found', anchor: found.value }
    : { kind: 'invalid', why: `${label} is damaged: ${found.why}` };
}

export function writeAnchor(path: string, unsigned: UnsignedAnchor, key: SigningKey): void {
  const value = sign(null, Buffer.from(canonicalJson(unsigned), 'utf8'), key.privateKey).toString('base64');
  const anchor: ChainAnchor = { ...unsigned, signature: { alg: 'ed25519', keyId: key.keyId, value } };
  ensureDir(dirname(path), 0o700);
  writeStateFile(path, ANCHOR_FILE, anchor);
}

/** Why the anchor's signature does not hold, or undefined when it does. */
export function anchorSignatureProblem(anchor: ChainAnchor, publicKeys: PublicKeyRing): string | undefined {
  const key = publicKeys.get(anchor.signature.keyId);
  if (!key) return `the anchor is signed by unknown key ${anchor.signature.keyId}`;
  const unsigned: Partial<ChainAnchor> = { ...anchor };
  delete unsigned.signature;
  let valid = false;
  try {
    valid = verify(
      null,
      Buffer.from(canonicalJson(unsigned), 'utf8'),
      key,
      Buffer.from(anchor.signature.value, 'base64'),
    );
  } catch {
    valid = false;
  }
  return valid ? undefined : 'the anchor’s signature does not match its content (changed after signing)';
}

/** The chain's end as the receipt files show it: the newest seq and the hash of that receipt. */
export interface ChainEnd {
  seq: number;
  /** undefined when the newest receipt could not be read. */
  head: string | undefined;
  id: string;
}

/**
 * What the anchor says is wrong with a chain ending at `end` (the chain itself is checked
 * elsewhere): receipts cut off the end, an anchor rolled back or left behind. An anchor one receipt behind, whose head is that receipt's
 * predecessor, is what a crash between writing a receipt and its anchor leaves: not a
 * problem, and the next append mends it.
 */
export function anchorProblems(
  anchor: ChainAnchor,
  end: ChainEnd | undefined,
  prevOfEnd: string | null | undefined,
): string[] {
  const problems: string[] = [];
  const seq = end?.seq ?? 0;
  if (seq < anchor.seq)
    problems.push(
      `receipt ${seq + 1}${anchor.seq > seq + 1 ? `..${anchor.seq}` : ''} missing: the anchor says ${anchor.seq} receipt(s), found ${seq}`,
    );
  else if (seq === anchor.seq) {
    if (end?.head !== undefined && end.head !== anchor.head)
      problems.push(`receipt ${seq} is not the one anchored (${anchor.headId}): replaced`);
  } else if (!(seq === anchor.seq + 1 && prevOfEnd === anchor.head))
    problems.push(
      `the anchor says ${anchor.seq} receipt(s), found ${seq}: the anchor was rolled back, or receipts were added without agentcell`,
    );
  return problems;
}
