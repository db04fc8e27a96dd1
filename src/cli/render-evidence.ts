import type { Fingerprint } from '../evidence/fingerprint-schema.js';
import { fingerprintHash } from '../evidence/fingerprint.js';
import type { BundleSummary } from '../evidence/inspect-bundle.js';
import type { BundleVerification } from '../evidence/verify-bundle.js';
import type { EnforcementReport } from './enforcement-probe.js';

export function fingerprintText(f: Fingerprint): string {
  const b = f.backend;
  const rootfs =
    f.rootfs.kind === 'image'
      ? `image ${f.rootfs.ref} (${f.rootfs.digest})`
      : f.rootfs.kind === 'directory'
        ? `directory (${f.rootfs.hash})`
        : 'the host (read-only)';
  return [
    `agentcell  ${f.agentcell} on node ${f.node}`,
    `host       ${f.host.distro ?? f.host.os}, kernel ${f.host.kernel}, ${f.host.arch}`,
    `backend    ${b.name} (${b.tool} ${b.version})`,
    ...(b.engine ? [`engine     ${b.engine.name} ${b.engine.version}`] : []),
    ...(b.runtime ? [`runtime    ${b.runtime.name} ${b.runtime.version}`] : []),
    `rootfs     ${rootfs}`,
    `workspace  ${f.workspace.mode}${f.workspace.overlayDriver ? ` (overlay driver ${f.workspace.overlayDriver})` : ''}`,
    `seccomp    ${f.seccomp.enabled ? (f.seccomp.hash ?? 'on (no agentcell filter here)') : 'off'}`,
    `policy     ${f.policy.mode} ${f.policy.hash}`,
    `tools      ${Object.entries(f.tools)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `hash       ${fingerprintHash(f)} (what receipts record)`,
  ].join('\n');
}

export function verificationText(v: BundleVerification): string {
  const key = v.key
    ? `key ${v.key.keyId} (${v.key.source === 'given' ? 'the one given' : 'the bundle’s own: pass --key to pin yours'})`
    : 'no key';
  if (!v.ok && v.failure) return `FAILED ${v.failure.file}: ${v.failure.problem}`;
  return `ok: every byte, hash and signature holds; ${v.receipts} receipt(s) chained and anchored; ${key}`;
}

export function bundleSummaryText(s: BundleSummary): string {
  const lines = [
    s.verified.ok
      ? `verified: yes (key ${s.verified.key?.keyId ?? '?'}, ${s.verified.key?.source === 'given' ? 'given' : 'the bundle’s own'})`
      : `verified: NO — ${s.verified.failure?.file ?? '?'}: ${s.verified.failure?.problem ?? ''}`,
    `cell ${s.cell}${s.run ? `, run ${s.run}` : ''}${s.createdAt ? `, exported ${s.createdAt}` : ''}`,
    '',
    'what ran:',
    ...s.runs.map((r) => {
      const e = r.enforcement;
      const canaries = e
        ? e.through.length > 0
          ? `canaries THROUGH: ${e.through.join(', ')}`
          : `canaries held (${e.held})`
        : 'no canaries';
      return `  #${r.seq} ${r.command.join(' ')} → exit ${r.exitCode ?? '?'} (${r.status}) on ${r.backend}; assurance ${r.assurance.level}${r.assurance.reasons.length ? ` (${r.assurance.reasons.join('; ')})` : ''}; ${canaries}; +${r.changes.added} ~${r.changes.modified} -${r.changes.deleted}; egress ${r.egress.allowed} allowed, ${r.egress.denied} denied`;
    }),
    ...(s.decisions.length
      ? ['decisions:', ...s.decisions.map((d) => `  ${d.decision} (${d.id}, deciding ${d.decides ?? '?'})`)]
      : []),
    `what changed (pending in the cell): ${s.changedFiles.length ? s.changedFiles.join(', ') : 'nothing'}`,
    `what was reached: ${s.reached.length ? s.reached.map((r) => `${r.host} (${r.decision})`).join(', ') : 'nothing'}`,
    `landing: ${s.landing}`,
  ];
  return lines.join('\n');
}

export function enforcementText(e: EnforcementReport): string {
  const mark = { blocked: 'held', through: 'FAIL', skipped: 'skip', inconclusive: 'warn' } as const;
  return [
    `enforcement canaries (cell ${e.cell}, ${e.backend}, receipt ${e.receipt ?? 'none'}):`,
    ...e.probes.map((p) => `  ${mark[p.result]} ${p.probe}: ${p.detail}`),
  ].join('\n');
}
