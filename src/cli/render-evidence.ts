import type { Fingerprint } from '../evidence/fingerprint-schema.js';
import { fingerprintHash } from '../evidence/fingerprint.js';

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
