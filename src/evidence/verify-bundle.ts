import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AgentcellError } from '../errors.js';
import { anchorSignatureProblem, anchorProblems, readAnchorText } from '../receipts/chain-anchor.js';
import type { Receipt } from '../receipts/receipt.js';
import { receiptHash, verifyReceipts } from '../receipts/receipt-chain.js';
import { keyIdOf, publicKeyRing } from '../receipts/signing-key.js';
import { canonicalJson, sha256 } from '../_internal/canonical-hash.js';
import { BundleManifestSchema, type BundleManifest } from './bundle-manifest.js';
import { readStrictTar, TarProblem, type TarMember } from './strict-tar.js';

/**
 * Checks an evidence bundle offline, with nothing but the bundle and a public key: the
 * archive's every byte (strict-tar.ts), the manifest's signature, each member's sha256,
 * each receipt's signature and chain link, and the anchor (so a chain cut short shows).
 * Stops at the first thing that fails and names it.
 */
export interface BundleVerification {
  ok: boolean;
  /** The first failure: the member it is in (or `archive`) and what is wrong. */
  failure?: { file: string; problem: string };
  /** Which key the signatures were checked with: the one given (`--key`), or the bundle's own. */
  key: { source: 'given' | 'bundle'; keyId: string } | null;
  receipts: number;
  manifest?: BundleManifest;
  members?: TarMember[];
}

export function verifyBundle(file: string, keyFile?: string): BundleVerification {
  let archive: Buffer;
  try {
    archive = readFileSync(file);
  } catch (cause) {
    throw new AgentcellError('EVIDENCE_INVALID', `cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
  const given = keyFile === undefined ? undefined : readKey(keyFile);
  const fail = (f: string, problem: string, extra: Partial<BundleVerification> = {}): BundleVerification => ({
    ok: false,
    failure: { file: f, problem },
    key: null,
    receipts: 0,
    ...extra,
  });
  let members: TarMember[];
  try {
    members = readStrictTar(archive);
  } catch (error) {
    if (error instanceof TarProblem) return fail(error.file, error.problem);
    throw error;
  }
  const byName = new Map<string, Buffer>();
  for (const m of members) {
    if (byName.has(m.name)) return fail(m.name, 'appears twice in the archive');
    byName.set(m.name, m.data);
  }
  const manifestData = byName.get('manifest.json');
  if (!manifestData) return fail('manifest.json', 'missing from the archive');
  let manifest: BundleManifest;
  try {
    const parsed = BundleManifestSchema.safeParse(JSON.parse(manifestData.toString('utf8')));
    if (!parsed.success)
      return fail('manifest.json', `not an evidence manifest: ${parsed.error.issues[0]?.message ?? ''}`);
    manifest = parsed.data;
  } catch {
    return fail('manifest.json', 'not valid JSON');
  }
  const bundled = parseKey(byName.get('public-key.pem'));
  const key = given ?? bundled;
  if (!key) return fail('public-key.pem', 'missing or not a public key, and no --key given');
  const keyInfo = { source: given ? ('given' as const) : ('bundle' as const), keyId: keyIdOf(key) };
  const withKey = { key: keyInfo, manifest, members };
  if (manifest.signature.keyId !== keyInfo.keyId)
    return fail('manifest.json', `signed by key ${manifest.signature.keyId}, not ${keyInfo.keyId}`, withKey);
  const { signature, ...unsigned } = manifest;
  if (!verifySignature(canonicalJson(unsigned), signature.value, key))
    return fail('manifest.json', 'its signature does not match its content', withKey);
  if (bundled && keyIdOf(bundled) !== keyInfo.keyId)
    return fail('public-key.pem', `is key ${keyIdOf(bundled)}, not the key that signed (${keyInfo.keyId})`, withKey);
  const listed = new Set(manifest.members.map((m) => m.path));
  for (const m of members)
    if (m.name !== 'manifest.json' && !listed.has(m.name))
      return fail(m.name, 'in the archive but not in the manifest', withKey);
  for (const m of manifest.members) {
    const data = byName.get(m.path);
    if (!data) return fail(m.path, 'listed in the manifest, missing from the archive', withKey);
    if (data.length !== m.size || sha256(data) !== m.sha256)
      return fail(m.path, 'its sha256 does not match the manifest', withKey);
  }
  const receiptNames = manifest.members.map((m) => m.path).filter((p) => p.startsWith('receipts/'));
  const receipts: unknown[] = [];
  for (const name of receiptNames) {
    try {
      receipts.push(JSON.parse((byName.get(name) ?? Buffer.alloc(0)).toString('utf8')));
    } catch {
      return fail(name, 'not valid JSON', withKey);
    }
  }
  const chain = verifyReceipts(receipts, publicKeyRing([key]), { cell: manifest.subject.cell });
  const first = chain.problems[0];
  if (first) {
    const at = receiptNames.find((n) => n.includes(first.id)) ?? `receipts (seq ${first.seq})`;
    return fail(at, first.problem, { ...withKey, receipts: receipts.length });
  }
  const anchorData = byName.get('anchor.json');
  if (anchorData) {
    const read = readAnchorText(anchorData.toString('utf8'), 'anchor.json');
    if (read.kind !== 'found') return fail('anchor.json', read.kind === 'invalid' ? read.why : 'missing', withKey);
    const problem =
      anchorSignatureProblem(read.anchor, publicKeyRing([key])) ??
      anchorProblems(read.anchor, chainEnd(receipts as Receipt[]), (receipts.at(-1) as Receipt | undefined)?.prev)[0];
    if (problem) return fail('anchor.json', problem, { ...withKey, receipts: receipts.length });
  } else if (!manifest.absent['anchor.json'])
    return fail('anchor.json', 'missing, and the manifest does not say why', withKey);
  const transcriptProblem = transcriptMismatch(byName.get('transcript.raw'), receipts as Receipt[], manifest);
  if (transcriptProblem) return fail('transcript.raw', transcriptProblem, { ...withKey, receipts: receipts.length });
  return { ok: true, ...withKey, receipts: receipts.length };
}

/** A session's raw transcript must be what its run's (signed) receipt hashed. */
function transcriptMismatch(
  raw: Buffer | undefined,
  receipts: readonly Receipt[],
  manifest: BundleManifest,
): string | undefined {
  if (!raw) return undefined;
  const run = manifest.subject.run;
  const signed = receipts.find((r) => r.id === run)?.transcript;
  if (!signed) return `run ${run ?? '(none)'}'s receipt has no transcript sha256 to check it against`;
  if (raw.length !== signed.bytes || sha256(raw) !== signed.sha256)
    return `its sha256 (${sha256(raw)}, ${raw.length} bytes) is not the run receipt's transcript.sha256 (${signed.sha256}, ${signed.bytes} bytes)`;
  return undefined;
}

function chainEnd(receipts: readonly Receipt[]): { seq: number; head: string; id: string } | undefined {
  const last = receipts.at(-1);
  return last ? { seq: last.seq, head: receiptHash(last), id: last.id } : undefined;
}

function verifySignature(text: string, value: string, key: KeyObject): boolean {
  try {
    return verify(null, Buffer.from(text, 'utf8'), key, Buffer.from(value, 'base64'));
  } catch {
    return false;
  }
}

function parseKey(pem: Buffer | undefined): KeyObject | undefined {
  if (!pem) return undefined;
  try {
    const key = createPublicKey(pem);
    return key.asymmetricKeyType === 'ed25519' ? key : undefined;
  } catch {
    return undefined;
  }
}

function readKey(file: string): KeyObject {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (cause) {
    throw new AgentcellError('USAGE', `--key ${file}: cannot read it`, { cause });
  }
  const key = parseKey(pem);
  if (!key) throw new AgentcellError('USAGE', `--key ${file}: not an ed25519 public key (PEM, SPKI)`);
  return key;
}
