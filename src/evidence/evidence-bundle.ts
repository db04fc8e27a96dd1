import { sign } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { create as createTar } from 'tar';
import { listCells, readCell, cellDir as cellDirOf, cellNotFound } from '../cell/cell-store.js';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { anchorPath } from '../receipts/chain-anchor.js';
import type { Receipt } from '../receipts/receipt.js';
import { listReceiptFiles, listReceipts } from '../receipts/receipt-store.js';
import { loadOrCreateSigningKey } from '../receipts/signing-key.js';
import { diffLayers, type LayerEntry } from '../workspace/overlay/layer-diff.js';
import { peekLayerStack } from '../workspace/overlay/layer-stack.js';
import { canonicalJson, sha256 } from '../_internal/canonical-hash.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { removeTrees } from '../_internal/remove-trees.js';
import { AGENTCELL_VERSION } from '../version.js';
import type { Fingerprint } from './fingerprint-schema.js';
import { BUNDLE_KIND, type BundleManifest, type UnsignedManifest } from './bundle-manifest.js';

/**
 * An evidence bundle (DESIGN: Evidence): one tar a reviewer can check without agentcell's
 * state, only the public key. `manifest.json` (first in the archive) lists every other
 * member with its sha256 and is signed with the receipt key. Members:
 *
 * - `receipts/NNNNNN-ID.json`: the cell's whole chain, byte for byte as signed (their paths
 *   stay the host's: redacting them would break their signatures);
 * - `public-key.pem`, `anchor.json` (the chain's anchored head, so a cut-off end shows);
 * - `egress/ID.jsonl`, `egress/ID.spy.jsonl`: each run's egress log and spy records (the
 *   spy redacts secrets as it writes);
 * - `patch.diff`: the unified diff of what the cell holds and the workspace does not yet;
 * - `policy.json`, `fingerprint.json`: the policy and fingerprint a run here would get now
 *   (their hashes, compared with the receipts', say whether they changed since);
 * - `enforcement.json`: each run's canary results, as its receipt has them;
 * - `transcript.txt` (plain text) and `transcript.raw` (the bytes the run's receipt hashed)
 *   for a session, `landed.json` for a landed commit; the manifest says why each is absent.
 *
 * Every member but the receipts and `transcript.raw` (both byte for byte as hashed) has
 * the host's home directories written as `~`.
 */
export interface SessionExport {
  id: string;
  run: string;
  /** Absent when the run's receipt has no transcript hash. */
  transcript?: {
    /** The stream from `offset` up to the receipt's `transcript.bytes`. */
    raw: Buffer;
    /** > 0: the transcript cap dropped the first bytes, so the receipt's sha256 can't be checked. */
    offset: number;
    text: string;
  };
}

export interface ExportRequest {
  paths: AgentcellPaths;
  /** Exactly one. */
  run?: string;
  /** Read by the caller (sessions sit above evidence): src/sessions/session-evidence.ts. */
  session?: SessionExport;
  cell?: string;
  out: string;
  /** The policy and fingerprint a run in the cell's workspace gets now (the caller prepares one). */
  current: (
    workspace: string,
    cell: string,
  ) => Promise<{ policy: { hash: string; policy: unknown }; fingerprint: Fingerprint }>;
  hostEnv?: NodeJS.ProcessEnv;
}

export interface ExportReport {
  file: string;
  cell: string;
  run: string | null;
  members: { path: string; sha256: string; size: number }[];
  keyId: string;
}

export async function exportEvidence(request: ExportRequest): Promise<ExportReport> {
  const { paths } = request;
  const { cell, run } = subjectOf(request);
  const record = readCell(paths, cell);
  if (!record) throw cellNotFound(paths, cell);
  const dir = cellDirOf(paths, cell);
  const receipts = listReceipts(dir);
  if (run !== null && !receipts.some((r) => r.id === run))
    throw new AgentcellError('RECEIPT_NOT_FOUND', `no run ${run} in cell ${cell}`);
  const redact = homeRedactor(request.hostEnv ?? process.env);
  const staging = mkdtempSync(join(tmpdir(), 'agentcell-evidence-'));
  try {
    const members = new Map<string, Buffer>();
    for (const file of listReceiptFiles(dir)) members.set(`receipts/${file.name}`, readFileSync(file.path));
    const key = loadOrCreateSigningKey(paths.config);
    members.set('public-key.pem', Buffer.from(key.publicKey.export({ type: 'spki', format: 'pem' })));
    const anchor = anchorPath(paths.config, dir, cell);
    const slots: Record<string, string> = {};
    if (existsSync(anchor)) members.set('anchor.json', readFileSync(anchor));
    else slots['anchor.json'] = 'the cell has no anchored head yet';
    for (const name of egressFiles(dir, run))
      members.set(`egress/${name}`, redact(readFileSync(join(dir, 'egress', name))));
    members.set('patch.diff', redact(Buffer.from(await cellPatch(dir, record.workspace))));
    const current = await request.current(record.workspace, cell);
    members.set('policy.json', redact(json(current.policy)));
    members.set('fingerprint.json', redact(json(current.fingerprint)));
    members.set('enforcement.json', redact(json(enforcementOf(receipts, run))));
    addTranscript(members, slots, request.session, redact);
    slots['landed.json'] = landing(receipts);
    const unsigned: UnsignedManifest = {
      kind: BUNDLE_KIND,
      version: 1,
      createdAt: new Date().toISOString(),
      agentcell: AGENTCELL_VERSION,
      subject: { cell, run, ...(request.session ? { session: request.session.id } : {}) },
      members: [...members].map(([path, data]) => ({ path, sha256: sha256(data), size: data.length })),
      absent: slots,
      keyId: key.keyId,
    };
    const value = sign(null, Buffer.from(canonicalJson(unsigned), 'utf8'), key.privateKey).toString('base64');
    const manifest: BundleManifest = { ...unsigned, signature: { alg: 'ed25519', keyId: key.keyId, value } };
    members.set('manifest.json', json(manifest));
    const order = ['manifest.json', ...unsigned.members.map((m) => m.path)];
    for (const path of order) {
      makeDirs(dirname(join(staging, path)), 0o700);
      writeFileSync(join(staging, path), members.get(path) ?? Buffer.alloc(0), { mode: 0o644 });
    }
    makeDirs(dirname(request.out), 0o755);
    // Fixed mtimes and no owners: the same evidence makes the same bytes.
    await createTar({ file: request.out, cwd: staging, portable: true, noPax: true, mtime: new Date(0) }, order);
    return { file: request.out, cell, run, members: unsigned.members, keyId: key.keyId };
  } finally {
    removeTrees([staging]);
  }
}

function subjectOf(request: ExportRequest): { cell: string; run: string | null } {
  const given = [request.run, request.session, request.cell].filter((v) => v !== undefined).length;
  if (given !== 1)
    throw new AgentcellError('USAGE', 'evidence export needs exactly one of --run ID, --session ID or --cell NAME');
  if (request.cell !== undefined) return { cell: request.cell, run: null };
  const run = request.session?.run ?? request.run ?? '';
  for (const c of listCells(request.paths))
    if (listReceiptFiles(cellDirOf(request.paths, c.name)).some((f) => f.id === run)) return { cell: c.name, run };
  throw new AgentcellError('RECEIPT_NOT_FOUND', `no run ${run} in any cell (agentcell receipt list shows them)`);
}

function addTranscript(
  members: Map<string, Buffer>,
  slots: Record<string, string>,
  session: SessionExport | undefined,
  redact: (data: Buffer) => Buffer,
): void {
  if (!session) {
    slots['transcript.txt'] = 'not a session export';
    return;
  }
  const transcript = session.transcript;
  if (!transcript) {
    slots['transcript.txt'] = `session ${session.id}'s run receipt has no transcript`;
    return;
  }
  members.set('transcript.txt', redact(Buffer.from(transcript.text)));
  // Verbatim: it is what the receipt's transcript.sha256 covers (home paths stay, as in the receipts).
  if (transcript.offset === 0) members.set('transcript.raw', transcript.raw);
  else
    slots['transcript.raw'] =
      `the transcript cap dropped its first ${transcript.offset} bytes: the receipt's transcript.sha256 can't be checked`;
}

function json(value: unknown): Buffer {
  return Buffer.from(`${JSON.stringify(value, null, 2)}\n`);
}

/** The host's home directories (the caller's and the account's) written as `~`. */
function homeRedactor(env: NodeJS.ProcessEnv): (data: Buffer) => Buffer {
  const homes = [...new Set([env['HOME'], homedir()].filter((h): h is string => Boolean(h) && h !== '/'))];
  homes.sort((a, b) => b.length - a.length);
  return (data) => {
    let text = data.toString('utf8');
    for (const home of homes) text = text.split(home).join('~');
    return Buffer.from(text);
  };
}

function egressFiles(dir: string, run: string | null): string[] {
  let names: string[];
  try {
    names = readdirSync(join(dir, 'egress'));
  } catch {
    return [];
  }
  return names
    .filter((n) => /^r-[0-9a-z]+\.(spy\.)?jsonl$/.test(n))
    .filter((n) => run === null || n.startsWith(`${run}.`))
    .sort();
}

function enforcementOf(receipts: readonly Receipt[], run: string | null): unknown {
  return receipts
    .filter((r) => r.kind === 'run' && (run === null || r.id === run))
    .map((r) => ({ run: r.id, seq: r.seq, enforcement: r.enforcement ?? null }));
}

function landing(receipts: readonly Receipt[]): string {
  const accepted = receipts.filter((r) => r.kind === 'decision' && r.decision === 'accepted').length;
  return accepted > 0
    ? `no landed commit: ${accepted} accept(s) applied changes to the working tree (see their receipts); commits land with branch cells`
    : 'nothing landed';
}

/** The unified diff of the cell's pending changes against its workspace (diff -u per file). */
async function cellPatch(dir: string, workspace: string): Promise<string> {
  if (!existsSync(join(dir, 'layers.json'))) return '';
  const stack = peekLayerStack(dir);
  const sources = new Map<string, LayerEntry>();
  const changes = await diffLayers(stack, workspace, { sources });
  const parts: string[] = [];
  for (const c of changes) {
    if (c.kind !== 'file') {
      parts.push(`# ${c.change} ${c.kind} ${c.path}\n`);
      continue;
    }
    const before = c.change === 'added' ? '/dev/null' : join(workspace, c.path);
    const after = c.change === 'deleted' ? '/dev/null' : (sources.get(c.path)?.path ?? '/dev/null');
    const r = spawnSync('diff', ['-u', '--label', `a/${c.path}`, '--label', `b/${c.path}`, before, after], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    parts.push(r.stdout || `# ${c.change} ${c.path} (diff unavailable: ${r.stderr.trim() || 'no output'})\n`);
  }
  return parts.join('');
}
