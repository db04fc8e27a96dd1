import { join } from 'node:path';
import type { CellEgress, CellSpec, ExtraMount } from '../backends/backend.js';
import type { AgentcellPaths } from '../paths.js';
import type { Policy } from '../policy/schema.js';
import { usesGateway } from '../_internal/vocabulary.js';
import { newProxyToken } from '../egress/gateway/proxy-auth.js';
import { CELL_BRIDGE_NODE, cellEgressWiring, proxyEnvironment } from '../egress/cell/proxy-environment.js';
import { bridgeScriptPath, cellNode, egressSocketDir, type RunEgress } from '../egress/gateway/run-gateway.js';
import { cellDir } from '../cell/cell-store.js';
import { planInspection, refuseWithoutGateway } from '../cell/plan-inspection.js';

/** A gateway run's side of the cell; an open or closed network has none of it. */
export interface EgressParts {
  /** The gateway the run starts (holds the run's proxy token: never print it). */
  egress?: RunEgress;
  /** What the backend binds into the cell for the bridge. */
  wiring?: CellEgress;
  /** Proxy and trust variables for the cell; they win over the rest of its environment. */
  env: Record<string, string>;
  /** The cell CA and trust bundle, bound read-only, when the run inspects TLS. */
  mounts: ExtraMount[];
}

/**
 * network = allowlist (or learn): the run's gateway (token, rules, socket and log dirs, TLS
 * inspection) and how the cell reaches it. Otherwise nothing, and what only the gateway
 * can apply (proxy secrets, L7 rules) is refused rather than dropped.
 */
export function egressParts(context: {
  policy: Policy;
  paths: AgentcellPaths;
  cell: string;
  rootfs: CellSpec['rootfs'];
  /** The cell's PATH, where a directory rootfs's node is looked for. */
  cellPath: string | undefined;
  /** The cell's NODE_OPTIONS, which the trust variables extend. */
  cellNodeOptions?: string | undefined;
  hostEnv: NodeJS.ProcessEnv;
  workspace: string;
}): EgressParts {
  const { policy, rootfs } = context;
  if (!usesGateway(policy.network.mode)) {
    refuseWithoutGateway(policy);
    return { env: {}, mounts: [] };
  }
  const node = cellNode(rootfs, context.cellPath);
  const dir = cellDir(context.paths, context.cell);
  const socketDir = egressSocketDir(dir);
  const { allow, deny, resolve, inspect, rule } = policy.network;
  const token = newProxyToken();
  const inspection = planInspection(policy, {
    cellDir: dir,
    rootfs,
    hostEnv: context.hostEnv,
    workspace: context.workspace,
    nodeOptions: context.cellNodeOptions,
  });
  return {
    egress: {
      token,
      rules: { allow, deny, resolve, inspect, rule, learn: policy.network.mode === 'learn' },
      socketDir,
      logDir: join(dir, 'egress'),
      ...(inspection ? { inspect: inspection.run } : {}),
    },
    wiring: cellEgressWiring(join(socketDir, 'egress.sock'), bridgeScriptPath(), node),
    env: { ...proxyEnvironment(token, 'bind' in node ? CELL_BRIDGE_NODE : node.path), ...inspection?.env },
    mounts: inspection?.mounts ?? [],
  };
}
