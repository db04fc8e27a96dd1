import { userInfo } from 'node:os';
import { join } from 'node:path';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { requestEgressReload, type ReloadReport, type Requester } from '../egress/gateway/egress-control.js';
import { egressControlDir } from '../egress/gateway/run-gateway.js';
import { liveRuns } from './cell-egress-log.js';
import { cellDir } from './cell-store.js';

/** Where a running gateway cell's agentcell listens for reloads (served by run/serve-egress-reload.ts). */
export function egressControlSocket(paths: AgentcellPaths, cell: string): { dir: string; socket: string } {
  const dir = egressControlDir(cellDir(paths, cell));
  return { dir, socket: join(dir, 'control.sock') };
}

/** Asks the cell's running agentcell process to reload its allowlists from the host-side policy. */
export async function reloadCellEgress(
  paths: AgentcellPaths,
  cell: string,
  options: { dryRun?: boolean } = {},
): Promise<ReloadReport> {
  if (liveRuns(paths, cell).length === 0)
    throw new AgentcellError(
      'CELL_NOT_RUNNING',
      `cell ${cell} has no run going; agentcell allow reloads a running --network allowlist cell (a new run reads the policy anyway)`,
    );
  const { socket } = egressControlSocket(paths, cell);
  return requestEgressReload(socket, { op: 'reload', dryRun: options.dryRun ?? false, by: requester() });
}

function requester(): Requester {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = `uid ${process.getuid?.() ?? '?'}`; // a uid with no passwd entry (containers)
  }
  return { user, pid: process.pid };
}
