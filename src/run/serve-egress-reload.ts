import { rmSync } from 'node:fs';
import { isAbsolute, relative } from 'node:path';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import type { Policy } from '../policy/schema.js';
import { usesGateway } from '../_internal/vocabulary.js';
import type { EgressReload } from '../receipts/receipt.js';
import {
  diffHostRules,
  startEgressControl,
  type EgressControl,
  type ReloadReport,
} from '../egress/gateway/egress-control.js';
import type { EgressGateway } from '../egress/gateway/egress-gateway.js';
import type { HostRules } from '../egress/rules/host-rules.js';
import { makePrivateDir } from '../egress/gateway/run-gateway.js';
import { egressControlSocket } from '../cell/egress-reload.js';
import type { PreparedRun } from './prepare-run.js';
import { resolveCellPolicy } from './run-policy.js';

/**
 * The gateway rules a policy gives a running gateway cell; a reload can't turn it into an
 * open one, nor an allowlist cell into a learning one (learning → allowlist narrows: fine).
 */
function gatewayRules(network: Policy['network'], learning: boolean): HostRules {
  if (network.mode === 'open' || (network.mode === 'learn' && !learning))
    throw new AgentcellError(
      'RELOAD_REFUSED',
      `network.mode is now "${network.mode}": a reload never widens a running cell's network that way; start a new run for that`,
    );
  if (!usesGateway(network.mode)) return { allow: [], deny: [], resolve: {} };
  return { allow: network.allow, deny: network.deny, resolve: network.resolve, learn: network.mode === 'learn' };
}

/**
 * Serves `agentcell allow` for a running gateway cell: on each request the policy is
 * resolved again exactly as the run resolved it (same workspace, `--policy` file and
 * flags), refused if it now comes from a file the run did not read or from one the cell
 * could have written, and applied with `gateway.reload` (which revokes tunnels it refuses).
 * `onApplied` gets each applied (not dry-run) reload, for the run's receipt.
 */
export async function serveEgressReload(
  prepared: PreparedRun,
  run: string,
  paths: AgentcellPaths,
  gateway: EgressGateway,
  onApplied: (report: ReloadReport) => void,
): Promise<EgressControl | undefined> {
  const source = prepared.policySource;
  if (!source || !prepared.egress) return undefined;
  let current = prepared.egress.rules;
  const { dir, socket } = egressControlSocket(paths, prepared.cell);
  makePrivateDir(dir);
  const control = await startEgressControl(socket, async ({ dryRun, by }) => {
    const { workspace, resolved } = await resolveCellPolicy(source.options, paths, source.cwd);
    const newFiles = resolved.files.filter((file) => !prepared.resolved.files.includes(file));
    if (workspace !== prepared.workspace || newFiles.length > 0)
      throw new AgentcellError(
        'RELOAD_REFUSED',
        `the policy now comes from ${newFiles.join(', ') || workspace}, which the run did not read when it started; start a new run to use it`,
      );
    const writable = resolved.files.filter((file) => cellCanWrite(prepared, file));
    if (writable.length > 0)
      throw new AgentcellError(
        'RELOAD_REFUSED',
        `${writable.join(', ')} lies in a direct-mode workspace the cell can write; reloading from it could let the cell widen its own network`,
      );
    const next = gatewayRules(resolved.policy.network, current.learn === true);
    const report: ReloadReport = {
      run,
      dryRun,
      time: new Date().toISOString(),
      by,
      policyHash: resolved.hash,
      files: resolved.files,
      ...diffHostRules(current, next),
      revoked: 0,
    };
    if (dryRun) return report;
    report.revoked = gateway.reload(next).revoked;
    current = next;
    try {
      onApplied(report);
    } catch (cause) {
      const message = `reloaded, but could not journal the reload for the receipt: ${String(cause)}`;
      throw new AgentcellError('INTERNAL', message, { cause });
    }
    return report;
  });
  return {
    close: async () => {
      await control.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An applied reload as the run's receipt records it. */
export function receiptReload(report: ReloadReport): EgressReload {
  const { time, by, policyHash, files, added, removed, revoked } = report;
  return { time, by: { ...by }, policyHash, files: [...files], added, removed, revoked };
}

/** A direct-mode cell writes the workspace live; only its read-only control files are safe from it. */
function cellCanWrite(prepared: PreparedRun, file: string): boolean {
  if (prepared.spec.workspace.mode !== 'direct') return false;
  const rel = relative(prepared.workspace, file);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return false;
  return !prepared.spec.readonlyPaths.some((path) => file === path || file.startsWith(`${path}/`));
}
