import type { Receipt } from '../receipts/receipt.js';
import type { BundleVerification } from './verify-bundle.js';

/** What `evidence inspect` tells a reviewer: what ran, what changed, what was reached, assurance, landing. */
export interface BundleSummary {
  verified: { ok: boolean; failure?: { file: string; problem: string }; key: BundleVerification['key'] };
  cell: string;
  run: string | null;
  createdAt: string | null;
  runs: {
    id: string;
    seq: number;
    command: string[];
    exitCode: number | null;
    status: string;
    startedAt: string;
    backend: string;
    assurance: { level: string; reasons: string[] };
    changes: Receipt['changes'];
    egress: { allowed: number; denied: number };
    enforcement: { held: number; through: string[]; skipped: number } | null;
  }[];
  decisions: { id: string; decision: string; decides: string | null }[];
  changedFiles: string[];
  reached: { host: string; decision: string }[];
  landing: string;
}

export function summarizeBundle(v: BundleVerification): BundleSummary {
  const members = new Map((v.members ?? []).map((m) => [m.name, m.data]));
  const receipts = [...members]
    .filter(([name]) => name.startsWith('receipts/'))
    .map(([, data]) => parse<Receipt>(data))
    .filter((r): r is Receipt => r !== undefined);
  const subjectRun = v.manifest?.subject.run ?? null;
  const runs = receipts.filter((r) => r.kind === 'run' && (subjectRun === null || r.id === subjectRun));
  const patch = members.get('patch.diff')?.toString('utf8') ?? '';
  const changedFiles = [...patch.matchAll(/^\+\+\+ b\/(.*)$|^# \w+ \w+ (.*)$/gm)].map((m) => m[1] ?? m[2] ?? '');
  const reached = new Map<string, string>();
  for (const [name, data] of members) {
    if (!/^egress\/r-[0-9a-z]+\.jsonl$/.test(name)) continue;
    for (const line of data.toString('utf8').split('\n')) {
      const e = parse<{ host?: string; decision?: string }>(Buffer.from(line));
      if (e?.host && e.decision) reached.set(`${e.host} ${e.decision}`, e.decision);
    }
  }
  return {
    verified: { ok: v.ok, ...(v.failure ? { failure: v.failure } : {}), key: v.key },
    cell: v.manifest?.subject.cell ?? '?',
    run: subjectRun,
    createdAt: v.manifest?.createdAt ?? null,
    runs: runs.map((r) => ({
      id: r.id,
      seq: r.seq,
      command: r.command,
      exitCode: r.exitCode,
      status: r.status,
      startedAt: r.startedAt,
      backend: r.backend.name,
      assurance: { level: r.assurance.level, reasons: r.assurance.reasons },
      changes: r.changes,
      egress: { allowed: r.egress.allowed, denied: r.egress.denied },
      enforcement: r.enforcement
        ? {
            held: r.enforcement.filter((p) => p.result === 'blocked').length,
            through: r.enforcement.filter((p) => p.result === 'through').map((p) => p.probe),
            skipped: r.enforcement.filter((p) => p.result === 'skipped').length,
          }
        : null,
    })),
    decisions: receipts
      .filter((r) => r.kind === 'decision')
      .map((r) => ({ id: r.id, decision: r.decision, decides: r.decides ?? null })),
    changedFiles,
    reached: [...reached].map(([key, decision]) => ({ host: key.slice(0, key.lastIndexOf(' ')), decision })),
    landing: v.manifest?.absent['landed.json'] ?? 'see landed.json',
  };
}

function parse<T>(data: Buffer): T | undefined {
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
