import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { join } from 'node:path';
import { PROJECT_POLICY_FILE, resolvePolicy } from '../policy/resolve-policy.js';
import { compileHostRules } from '../egress/rules/host-rules.js';
import type { EgressEvent } from '../egress/log/egress-log.js';
import { egressLogPath, listEgressLogs, readEgressLog } from '../egress/log/egress-log-reader.js';
import { allowHosts, type AllowHostsResult } from './allow-hosts.js';
import { cellEgressDir, chooseEgressRuns } from './cell-egress-log.js';

/** What `agentcell allow --from-log` did: the run it learned from, its entries, and the edit. */
export interface AllowFromLogResult extends AllowHostsResult {
  run: string;
  /** `host:port` entries the run reached in learn mode that the current policy would refuse. */
  learned: string[];
}

/**
 * Turns what a learn-mode run reached into `[network] allow` entries of the workspace's
 * agentcell.toml (through `allowHosts`, so the same exact-edit check, diff and reload).
 * The run is `run`, else the cell's latest run with learned events. Each entry is
 * `host:port`, the narrowest pattern that allows exactly what was reached (cleartext HTTP
 * needs the port spelled out anyway); entries the workspace's policy allows by now, or
 * refuses with a deny entry (an allow entry would not change that), are left out.
 */
export async function allowFromLog(
  paths: AgentcellPaths,
  cell: string,
  workspace: string,
  options: { run?: string; dryRun?: boolean; onlyCell?: boolean } = {},
): Promise<AllowFromLogResult> {
  const run = options.run ?? latestLearningRun(paths, cell);
  const [chosen] = chooseEgressRuns(paths, cell, { run });
  const events = chosen === undefined ? [] : readEgressLog(egressLogPath(cellEgressDir(paths, cell), chosen)).events;
  const { network } = (await resolvePolicy({ workspace, paths })).policy;
  const current = compileHostRules({ allow: network.allow, deny: network.deny, resolve: network.resolve });
  const learned = [
    ...new Set(
      events.filter(isLearned).flatMap((event) => {
        const cleartext = event.wouldBe?.reason === 'cleartext-not-allowed' || event.kind === 'http';
        const now = current.decide(event.host, event.port, { cleartext });
        return now.reason === 'not-allowed' || now.reason === 'cleartext-not-allowed' ? [entryOf(event)] : [];
      }),
    ),
  ];
  const dryRun = options.dryRun ?? false;
  if (learned.length === 0) {
    const file = join(workspace, PROJECT_POLICY_FILE);
    const networkMode = network.mode ?? 'none';
    return {
      run,
      learned,
      file,
      dryRun,
      created: false,
      added: [],
      present: [],
      diff: [],
      networkMode,
      cells: [],
      reloads: [],
    };
  }
  const result = await allowHosts(paths, workspace, learned, {
    dryRun,
    ...(options.onlyCell ? { cell } : {}),
  });
  return { ...result, run, learned };
}

function isLearned(event: EgressEvent): boolean {
  return event.decision === 'allow' && event.reason === 'learned' && event.wouldBe !== undefined;
}

/** The allow-list spelling of what was reached: `name:port`, `1.2.3.4:port`, `[::1]:port`. */
function entryOf(event: EgressEvent): string {
  return `${event.host.includes(':') ? `[${event.host}]` : event.host}:${event.port}`;
}

/** The newest run of the cell whose egress log has a learned event. */
function latestLearningRun(paths: AgentcellPaths, cell: string): string {
  const dir = cellEgressDir(paths, cell);
  for (const run of listEgressLogs(dir).reverse())
    if (readEgressLog(egressLogPath(dir, run)).events.some(isLearned)) return run;
  throw new AgentcellError(
    'RECEIPT_NOT_FOUND',
    `no run of cell ${cell} learned anything: run it once with --network learn, then agentcell allow --from-log`,
  );
}
