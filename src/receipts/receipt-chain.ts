import { sign, verify } from 'node:crypto';
import { canonicalJson, sha256 } from '../_internal/canonical-hash.js';
import type { Receipt, UnsignedReceipt } from './receipt.js';
import { receiptShapeProblem } from './receipt.js';
import type { PublicKeyRing, SigningKey } from './signing-key.js';

/** `sha256:` + sha256 of the receipt's canonical JSON, signature included; the next receipt's `prev`. */
export function receiptHash(receipt: Receipt): string {
  return `sha256:${sha256(canonicalJson(receipt))}`;
}

/** The bytes a signature covers: the canonical JSON of the receipt without `signature`. */
export function signedPayload(receipt: UnsignedReceipt | Receipt): Buffer {
  const unsigned: Partial<Receipt> = { ...receipt };
  delete unsigned.signature;
  return Buffer.from(canonicalJson(unsigned), 'utf8');
}

export function signReceipt(unsigned: UnsignedReceipt, key: SigningKey): Receipt {
  const value = sign(null, signedPayload(unsigned), key.privateKey).toString('base64');
  return { ...unsigned, signature: { alg: 'ed25519', keyId: key.keyId, value } };
}

export interface ChainProblem {
  /** The receipt the problem is found at (its own id, or "?" when it has none). */
  id: string;
  /** Its seq as recorded (0 when it has none). */
  seq: number;
  problem: string;
}

export interface ChainVerification {
  ok: boolean;
  checked: number;
  problems: ChainProblem[];
}

/**
 * Checks a cell's receipts in chain order: each is well-formed and signed by a known
 * key, seq runs 1, 2, 3… without gaps or repeats, each `prev` is the hash of the
 * receipt before it, ids are unique and every receipt names the same cell
 * (`options.cell`, else the first receipt's). A changed field, or a receipt removed,
 * inserted or moved, is reported at the receipt where the chain breaks.
 *
 * What a chain can't show by itself: receipts cut off its end. Compare `checked`
 * with a count kept elsewhere when that matters.
 */
export function verifyReceipts(
  receipts: readonly unknown[],
  publicKeys: PublicKeyRing,
  options: { cell?: string } = {},
): ChainVerification {
  const problems: ChainProblem[] = [];
  const seen = new Set<string>();
  const cell = options.cell ?? cellOf(receipts[0]);
  let previous: Receipt | undefined;
  let previousSeq = 0;
  for (const [index, value] of receipts.entries()) {
    const { id, seq } = labelOf(value);
    const report = (problem: string): void => {
      problems.push({ id, seq, problem });
    };
    const shape = receiptShapeProblem(value);
    if (shape !== undefined) {
      report(`malformed receipt: ${shape}`);
      previous = undefined;
      previousSeq = seq > 0 ? seq : previousSeq + 1;
      continue;
    }
    const receipt = value as Receipt;

    const signatureProblem = checkSignature(receipt, publicKeys);
    if (signatureProblem) report(signatureProblem);

    if (receipt.seq !== previousSeq + 1)
      report(
        receipt.seq > previousSeq + 1
          ? `seq ${receipt.seq} follows seq ${previousSeq}: receipt ${previousSeq + 1}${receipt.seq > previousSeq + 2 ? `-${receipt.seq - 1}` : ''} missing`
          : `seq ${receipt.seq} follows seq ${previousSeq}: out of order or repeated`,
      );

    if (index === 0) {
      if (receipt.seq === 1 && receipt.prev !== null) report('receipt 1 has a prev hash: it was not the first');
    } else if (previous === undefined) {
      // the receipt before was malformed, and is already reported
    } else if (receipt.prev !== receiptHash(previous)) {
      report(`prev does not match the hash of receipt ${previous.seq} (${previous.id}): the chain is broken here`);
    }

    if (seen.has(receipt.id)) report(`id ${receipt.id} appears more than once`);
    seen.add(receipt.id);
    if (cell !== undefined && receipt.cell !== cell) report(`belongs to cell "${receipt.cell}", not "${cell}"`);

    previous = receipt;
    previousSeq = receipt.seq;
  }
  return { ok: problems.length === 0, checked: receipts.length, problems };
}

function checkSignature(receipt: Receipt, publicKeys: PublicKeyRing): string | undefined {
  const { keyId, value } = receipt.signature;
  const key = publicKeys.get(keyId);
  if (!key) return `signed by unknown key ${keyId} (not this host's key, nor in keys/trusted/)`;
  let valid: boolean;
  try {
    valid = verify(null, signedPayload(receipt), key, Buffer.from(value, 'base64'));
  } catch {
    valid = false;
  }
  return valid ? undefined : `signature does not match its content (changed after signing) for key ${keyId}`;
}

function labelOf(value: unknown): { id: string; seq: number } {
  const record = value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  const id = typeof record['id'] === 'string' ? record['id'] : '?';
  const seq = Number.isSafeInteger(record['seq']) ? (record['seq'] as number) : 0;
  return { id, seq };
}

function cellOf(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const cell = (value as Record<string, unknown>)['cell'];
  return typeof cell === 'string' ? cell : undefined;
}
