import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { AgentcellError } from '../src/errors.js';
import { agentcellPaths } from '../src/paths.js';
import {
  decisionDraft,
  decisionFor,
  isReceiptId,
  newReceiptId,
  type Receipt,
  type ReceiptDraft,
  type UnsignedReceipt,
} from '../src/receipts/receipt.js';
import { anchorPath } from '../src/receipts/chain-anchor.js';
import { receiptHash, signReceipt, verifyReceipts } from '../src/receipts/receipt-chain.js';
import {
  appendReceipt,
  latestReceipt,
  listReceiptFiles,
  listReceipts,
  readReceipt,
  receiptStore,
  verifyCell,
  type ReceiptStore,
} from '../src/receipts/receipt-store.js';
import { renderReceiptJson, renderReceiptMarkdown } from '../src/receipts/render-receipt.js';
import {
  keyIdOf,
  keyPaths,
  loadOrCreateSigningKey,
  loadPublicKeys,
  publicKeyRing,
  type SigningKey,
} from '../src/receipts/signing-key.js';

function runDraft(overrides: Partial<ReceiptDraft> = {}): ReceiptDraft {
  const startedAt = new Date().toISOString();
  return {
    kind: 'run',
    command: ['sh', '-c', 'npm test'],
    exitCode: 0,
    startedAt,
    endedAt: startedAt,
    durationMs: 0,
    status: 'completed',
    decision: 'pending',
    policy: { hash: `sha256:${'a'.repeat(64)}`, mode: 'development' },
    assurance: { mode: 'development', level: 'reduced', reasons: ['mode development'] },
    backend: { name: 'bwrap', version: '0.9.0' },
    workspace: { path: '/work/repo', mode: 'overlay', gitRef: 'abc123', gitDirty: false },
    checkpoint: { before: 'cp-1', after: 'cp-2' },
    changes: { added: 1, modified: 2, deleted: 0 },
    egress: { allowed: 3, denied: 1 },
    mounts: [{ source: '/data', target: '/mnt/data', mode: 'ro' }],
    env: ['PATH', 'HOME'],
    tools: { node: process.version },
    timings: { prepare: 12, run: 340 },
    ...overrides,
  };
}

let root: string;
let paths: { state: string; config: string };
let key: SigningKey;
let store: ReceiptStore;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'agentcell-receipts-'));
  paths = agentcellPaths({ AGENTCELL_HOME: root });
  key = loadOrCreateSigningKey(paths.config);
  store = receiptStore(join(paths.state, 'cells', 'web'), key);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

async function chainOf(n: number): Promise<Receipt[]> {
  const out: Receipt[] = [];
  for (let i = 1; i <= n; i++) out.push(await appendReceipt(store, runDraft({ exitCode: i })));
  return out;
}

function filesOf(): string[] {
  return listReceiptFiles(store.cellDir).map((f) => f.path);
}

describe('receipt signing key', () => {
  it('is created 0600 in a 0700 directory, with its public key beside it, and reused', () => {
    const p = keyPaths(paths.config);
    assert.equal(statSync(p.privateKey).mode & 0o777, 0o600);
    assert.equal(statSync(p.dir).mode & 0o777, 0o700);
    assert.ok(existsSync(p.publicKey));
    assert.match(key.keyId, /^[0-9a-f]{16}$/);
    assert.equal(keyIdOf(key.publicKey), key.keyId);
    const pem = readFileSync(p.privateKey, 'utf8');
    const again = loadOrCreateSigningKey(paths.config);
    assert.equal(again.keyId, key.keyId);
    assert.equal(readFileSync(p.privateKey, 'utf8'), pem);
    assert.deepEqual([...loadPublicKeys(paths.config).keys()], [key.keyId]);
  });

  it('refuses a private key other users can read', () => {
    chmodSync(keyPaths(paths.config).privateKey, 0o644);
    assert.throws(() => loadOrCreateSigningKey(paths.config), /readable by other users.*chmod 600/);
  });

  it('trusts keys in keys/trusted/*.pub, e.g. a rotated-out key', async () => {
    const other = otherKey();
    const oldDir = join(paths.state, 'cells', 'old');
    const old = receiptStore(oldDir, other, 'old', anchorPath(paths.config, oldDir, 'old'));
    await appendReceipt(old, runDraft());
    assert.equal(verifyCell(old.cellDir, loadPublicKeys(paths.config)).ok, false);
    mkdirSync(keyPaths(paths.config).trusted, { recursive: true });
    writeFileSync(
      join(keyPaths(paths.config).trusted, 'old.pub'),
      other.publicKey.export({ type: 'spki', format: 'pem' }),
    );
    const ring = loadPublicKeys(paths.config);
    assert.deepEqual([...ring.keys()].sort(), [key.keyId, other.keyId].sort());
    assert.equal(verifyCell(old.cellDir, ring).ok, true);
  });
});

function otherKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { keyId: keyIdOf(publicKey), privateKey, publicKey, path: '(memory)' };
}

describe('receipt chain', () => {
  it('a chain of 5 verifies, seq 1..5 each pointing at the one before', async () => {
    const receipts = await chainOf(5);
    assert.deepEqual(
      receipts.map((r) => r.seq),
      [1, 2, 3, 4, 5],
    );
    assert.equal(receipts[0]!.prev, null);
    for (let i = 1; i < 5; i++) assert.equal(receipts[i]!.prev, receiptHash(receipts[i - 1]!));
    assert.ok(receipts.every((r) => r.cell === 'web' && r.signature.keyId === key.keyId && isReceiptId(r.id)));
    assert.deepEqual(listReceipts(store.cellDir), receipts);
    const ring = loadPublicKeys(paths.config);
    assert.deepEqual(verifyReceipts(receipts, ring), { ok: true, checked: 5, problems: [] });
    assert.deepEqual(verifyCell(store.cellDir, ring), { ok: true, checked: 5, problems: [] });
    for (const path of filesOf()) assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  it('a changed exitCode in receipt 3 is reported at receipt 3', async () => {
    const receipts = await chainOf(5);
    const path = filesOf()[2]!;
    const tampered = JSON.parse(readFileSync(path, 'utf8')) as Receipt;
    tampered.exitCode = 0;
    writeFileSync(path, JSON.stringify(tampered));
    const result = verifyCell(store.cellDir, loadPublicKeys(paths.config));
    assert.equal(result.ok, false);
    const at3 = result.problems.filter((p) => p.id === receipts[2]!.id);
    assert.equal(at3.length, 1);
    assert.equal(at3[0]!.seq, 3);
    assert.match(at3[0]!.problem, /signature does not match/);
    // receipt 4 points at the original receipt 3
    assert.ok(result.problems.some((p) => p.id === receipts[3]!.id && /prev/.test(p.problem)));
  });

  it('swapped file contents and reordered receipts are reported', async () => {
    const receipts = await chainOf(5);
    const ring = loadPublicKeys(paths.config);
    const reordered = [receipts[0]!, receipts[2]!, receipts[1]!, receipts[3]!, receipts[4]!];
    const byArray = verifyReceipts(reordered, ring);
    assert.equal(byArray.ok, false);
    assert.ok(byArray.problems.some((p) => p.id === receipts[2]!.id && /seq 3 follows seq 1/.test(p.problem)));

    const [f2, f3] = [filesOf()[1]!, filesOf()[2]!];
    const [c2, c3] = [readFileSync(f2), readFileSync(f3)];
    writeFileSync(f2, c3);
    writeFileSync(f3, c2);
    const byFiles = verifyCell(store.cellDir, ring);
    assert.equal(byFiles.ok, false);
    assert.ok(byFiles.problems.some((p) => p.id === receipts[2]!.id && /swapped/.test(p.problem)));
    assert.ok(byFiles.problems.some((p) => p.id === receipts[1]!.id && /swapped/.test(p.problem)));
  });

  it('a deleted receipt 2 is a gap reported at receipt 3', async () => {
    const receipts = await chainOf(5);
    unlinkSync(filesOf()[1]!);
    const result = verifyCell(store.cellDir, loadPublicKeys(paths.config));
    assert.equal(result.ok, false);
    assert.equal(result.checked, 4);
    const at3 = result.problems.filter((p) => p.id === receipts[2]!.id).map((p) => p.problem);
    assert.ok(at3.some((p) => /receipt 2 missing/.test(p)));
    assert.ok(at3.some((p) => /prev does not match/.test(p)));
    assert.ok(result.problems.every((p) => p.id === receipts[2]!.id));
  });

  it('an inserted receipt is reported, even one signed with the right key', async () => {
    const receipts = await chainOf(4);
    const elsewhere = await appendReceipt(receiptStore(join(paths.state, 'cells', 'api'), key), runDraft());
    const ring = loadPublicKeys(paths.config);
    const withInsert = [receipts[0]!, receipts[1]!, elsewhere, receipts[2]!, receipts[3]!];
    const result = verifyReceipts(withInsert, ring);
    assert.equal(result.ok, false);
    assert.ok(result.problems.some((p) => p.id === elsewhere.id && /belongs to cell "api"/.test(p.problem)));
    assert.ok(result.problems.some((p) => p.id === elsewhere.id && /seq 1 follows seq 2/.test(p.problem)));
    assert.ok(result.problems.some((p) => p.id === receipts[2]!.id && /prev does not match/.test(p.problem)));

    const forged = signReceipt(
      { ...runDraft(), id: newReceiptId(), cell: 'web', seq: 3, prev: receiptHash(receipts[1]!) },
      key,
    );
    const result2 = verifyReceipts([receipts[0]!, receipts[1]!, forged, receipts[2]!, receipts[3]!], ring);
    assert.ok(result2.problems.some((p) => p.id === receipts[2]!.id && /seq 3 follows seq 3/.test(p.problem)));
  });

  it('a receipt signed by another key is rejected', async () => {
    const receipts = await chainOf(3);
    const path = filesOf()[2]!;
    const unsigned: Partial<Receipt> = JSON.parse(readFileSync(path, 'utf8')) as Receipt;
    delete unsigned.signature;
    const other = otherKey();
    writeFileSync(path, JSON.stringify(signReceipt(unsigned as UnsignedReceipt, other)));
    const result = verifyCell(store.cellDir, loadPublicKeys(paths.config));
    assert.deepEqual(
      result.problems.map((p) => [p.id, p.seq]),
      [[receipts[2]!.id, 3]],
    );
    assert.match(result.problems[0]!.problem, new RegExp(`unknown key ${other.keyId}`));
    // and a forged signature value under the real key id
    const forged = signReceipt(unsigned as UnsignedReceipt, other);
    forged.signature.keyId = key.keyId;
    const r2 = verifyReceipts([receipts[0]!, receipts[1]!, forged], publicKeyRing([key.publicKey]));
    assert.match(r2.problems[0]!.problem, /signature does not match/);
  });

  it('reports a file that is not JSON and still appends after it', async () => {
    const receipts = await chainOf(2);
    writeFileSync(filesOf()[1]!, '{ not json');
    const next = await appendReceipt(store, runDraft());
    assert.equal(next.seq, 3);
    const result = verifyCell(store.cellDir, loadPublicKeys(paths.config));
    assert.equal(result.checked, 3);
    assert.ok(result.problems.some((p) => p.id === receipts[1]!.id && /not valid JSON/.test(p.problem)));
    assert.throws(() => listReceipts(store.cellDir), /not valid JSON/);
  });
});

describe('receipt chain anchor', () => {
  const verify = (): ReturnType<typeof verifyCell> =>
    verifyCell(store.cellDir, loadPublicKeys(paths.config), { anchor: store.anchor });

  it('lives outside the cell dir, under the config dir, and verifies a whole chain', async () => {
    await chainOf(3);
    assert.ok(store.anchor.startsWith(join(paths.config, 'anchors')), store.anchor);
    assert.ok(!store.anchor.startsWith(paths.state));
    assert.equal(statSync(store.anchor).mode & 0o777, 0o600);
    assert.deepEqual(verify(), { ok: true, checked: 3, problems: [] });
  });

  it('a deleted newest receipt is named: the anchor says 7, found 6; and a later append keeps saying so', async () => {
    const receipts = await chainOf(7);
    // Control: the chain alone can't see it.
    unlinkSync(filesOf().at(-1)!);
    assert.equal(verifyCell(store.cellDir, loadPublicKeys(paths.config)).ok, true);
    const cut = verify();
    assert.equal(cut.ok, false);
    assert.deepEqual(
      cut.problems.map((p) => p.problem),
      ['receipt 7 missing: the anchor says 7 receipt(s), found 6'],
    );
    // The next receipt takes seq 7 again; the anchor moves on but carries the finding.
    const next = await appendReceipt(store, runDraft());
    assert.equal(next.seq, 7);
    assert.notEqual(next.id, receipts[6]!.id);
    const after = verify();
    assert.equal(after.ok, false);
    assert.match(after.problems[0]?.problem ?? '', /before receipt 7: receipt 7 missing: the anchor says 7/);
  });

  it('a replaced newest receipt, a deleted anchor and a rolled-back anchor are reported', async () => {
    await chainOf(3);
    const saved = readFileSync(store.anchor);
    await chainOf(2);
    // Rolled back: an older anchor put back.
    writeFileSync(store.anchor, saved);
    assert.match(
      verify().problems[0]?.problem ?? '',
      /anchor says 3 receipt\(s\), found 5: the anchor was rolled back/,
    );
    // Deleted: an error, not a warning (deleting it with the newest receipts would pass otherwise).
    unlinkSync(store.anchor);
    assert.match(verify().problems[0]?.problem ?? '', /anchor .* is missing/);
    // Forged: a changed count without the key.
    await appendReceipt(store, runDraft());
    const anchor = JSON.parse(readFileSync(store.anchor, 'utf8')) as { seq: number };
    writeFileSync(store.anchor, JSON.stringify({ ...anchor, seq: anchor.seq - 1 }));
    assert.ok(verify().problems.some((p) => /signature does not match/.test(p.problem)));
  });

  it('an anchor one receipt behind (a crash between receipt and anchor) is not a problem', async () => {
    await chainOf(2);
    const saved = readFileSync(store.anchor);
    await chainOf(1);
    writeFileSync(store.anchor, saved);
    assert.deepEqual(verify().problems, []);
  });

  it('an empty cell needs no anchor; the first receipt makes one', async () => {
    assert.deepEqual(verify(), { ok: true, checked: 0, problems: [] });
    assert.ok(!existsSync(store.anchor));
    await chainOf(1);
    assert.ok(existsSync(store.anchor));
  });
});

describe('receipt store', () => {
  it('reads receipts by id, id prefix and seq; the latest; refuses a duplicate id', async () => {
    assert.equal(latestReceipt(store.cellDir), null);
    assert.deepEqual(listReceipts(store.cellDir), []);
    const receipts = await chainOf(3);
    const second = receipts[1]!;
    assert.deepEqual(readReceipt(store.cellDir, second.id), second);
    assert.deepEqual(readReceipt(store.cellDir, second.id.slice(0, 16)), second);
    assert.deepEqual(readReceipt(store.cellDir, second.id.slice(2, 18)), second);
    assert.deepEqual(readReceipt(store.cellDir, '2'), second);
    assert.deepEqual(latestReceipt(store.cellDir), receipts[2]);
    assert.throws(
      () => readReceipt(store.cellDir, 'r-zzzz'),
      (e: unknown) => e instanceof AgentcellError && /no receipt "r-zzzz" in cell "web"/.test(e.message),
    );
    assert.throws(() => readReceipt(store.cellDir, 'r-'), /matches 3 receipts/);
    await assert.rejects(appendReceipt(store, runDraft({ id: second.id })), /already in cell "web"/);
    assert.deepEqual(await appendReceipt(store, runDraft({ id: second.id }), { ifAbsent: true }), second);
    assert.equal(listReceipts(store.cellDir).length, 3);
  });

  it('names files <seq>-<id>.json and ids sort by time', async () => {
    const [a, b] = await chainOf(2);
    assert.deepEqual(
      listReceiptFiles(store.cellDir).map((f) => f.name),
      [`000001-${a!.id}.json`, `000002-${b!.id}.json`],
    );
    const early = newReceiptId(new Date('2024-01-01T00:00:00Z'));
    const late = newReceiptId(new Date('2031-06-01T00:00:00Z'));
    assert.ok(early < late);
    assert.notEqual(newReceiptId(), newReceiptId());
  });

  it('records decisions as receipts in the same chain', async () => {
    const [run1, run2] = await chainOf(2);
    const now = new Date().toISOString();
    const decision = await appendReceipt(
      store,
      decisionDraft(run2!, { decision: 'accepted', command: ['agentcell', 'accept'], startedAt: now, endedAt: now }),
    );
    const run3 = await appendReceipt(store, runDraft());
    assert.equal(decision.kind, 'decision');
    assert.equal(decision.decides, run2!.id);
    assert.equal(decision.seq, 3);
    assert.equal(decision.exitCode, 0);
    const all = listReceipts(store.cellDir);
    assert.equal(decisionFor(all, run1!.id), 'accepted');
    assert.equal(decisionFor(all, run2!.id), 'accepted');
    assert.equal(decisionFor(all, run3.id), 'pending');
    assert.equal(verifyCell(store.cellDir, loadPublicKeys(paths.config)).ok, true);
  });

  it('restore --to a checkpoint marks restored only the runs above it; those below stay pending', async () => {
    const run1 = await appendReceipt(store, runDraft({ checkpoint: { before: null, after: 'l1' } }));
    const run2 = await appendReceipt(store, runDraft({ checkpoint: { before: 'l1', after: 'l2' } }));
    const run3 = await appendReceipt(store, runDraft({ checkpoint: { before: 'l2', after: 'l3' } }));
    const now = new Date().toISOString();
    const restore = (to: string | null): Parameters<typeof decisionDraft>[1] => ({
      decision: 'restored',
      command: ['agentcell', 'restore'],
      startedAt: now,
      endedAt: now,
      checkpoint: { before: 'l3', after: to },
    });
    await appendReceipt(store, decisionDraft(run3, restore('l1')));
    let all = listReceipts(store.cellDir);
    assert.deepEqual(
      [run1, run2, run3].map((r) => decisionFor(all, r.id)),
      ['pending', 'restored', 'restored'],
    );
    // A later full restore drops what was kept.
    await appendReceipt(store, decisionDraft(run3, restore(null)));
    all = listReceipts(store.cellDir);
    assert.equal(decisionFor(all, run1.id), 'restored');
  });
});

describe('receipt rendering', () => {
  it('renders markdown with status, command, policy, assurance, workspace, changes, egress, timings, key', async () => {
    const r = await appendReceipt(store, runDraft({ exitCode: 3, command: ['sh', '-c', "echo 'hi' there"] }));
    const md = renderReceiptMarkdown(r);
    for (const needle of [
      'Run completed · exit 3 (failed) · pending',
      `sh -c 'echo '\\''hi'\\'' there'`,
      r.policy.hash,
      '**reduced**',
      '- mode development',
      'git abc123 (clean)',
      '1 added, 2 modified, 0 deleted',
      '3 allowed, 1 denied',
      'run: 340 ms',
      `key \`${key.keyId}\``,
    ])
      assert.ok(md.includes(needle), `missing ${needle} in:\n${md}`);
    assert.deepEqual(JSON.parse(renderReceiptJson(r)), r);
    assert.match(
      renderReceiptMarkdown(r, { decision: 'restored' }),
      /^# Run completed · exit 3 \(failed\) · restored\n/,
    );
  });
});
