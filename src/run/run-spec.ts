import { realpathSync } from 'node:fs';
import type { CellSpec, ExtraMount } from '../backends/backend.js';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import type { Policy } from '../policy/schema.js';
import { parseDuration, parseSize } from '../policy/units.js';
import type { LayerStack } from '../workspace/overlay/layer-stack.js';
import type { AgentCellParts } from '../agents/prepare-agent.js';
import { cellSshMounts } from '../cell/cell-ssh-key.js';
import type { EgressParts } from './run-egress.js';
import { isInside, workspaceOverlay, type HiddenPaths } from './run-filesystem.js';

/** What the earlier steps decided, put together as the one thing a backend reads. */
export interface SpecParts {
  policy: Policy;
  paths: AgentcellPaths;
  cell: string;
  workspace: string;
  cwd: string;
  home: string;
  stack: LayerStack | undefined;
  rootfs: CellSpec['rootfs'];
  hidden: HiddenPaths;
  mounts: readonly ExtraMount[];
  env: Record<string, string>;
  agent: AgentCellParts | undefined;
  egress: EgressParts;
  argv: readonly string[];
  tty: boolean;
}

/** The cell's spec: rootfs, workspace and its overlay, masks, mounts, env, identity, network, limits, argv. */
export function cellSpec(parts: SpecParts): CellSpec {
  const { policy, workspace, stack, agent, egress } = parts;
  const gateway = egress.wiring !== undefined;
  const spec: CellSpec = {
    cell: parts.cell,
    rootfs: parts.rootfs,
    workspace: stack
      ? { path: workspace, mode: policy.workspace.mode, overlay: workspaceOverlay(stack, workspace) }
      : { path: workspace, mode: policy.workspace.mode },
    masks: parts.hidden.masks,
    readonlyPaths: parts.hidden.readonlyPaths,
    mounts: [
      ...(agent?.mounts ?? []),
      ...parts.mounts,
      ...egress.mounts,
      ...(policy.network.mode === 'none'
        ? []
        : cellSshMounts(parts.paths, parts.cell, parts.home, {
            gateway,
            rootfs: parts.rootfs.kind === 'host' ? '/' : parts.rootfs.path,
          })),
    ],
    home: parts.home,
    cwd: isInside(workspace, parts.cwd) ? realpathSync(parts.cwd) : workspace,
    argv: agent?.argv ?? [...parts.argv],
    env: parts.env,
    identity: cellIdentity(policy),
    network: policy.network.mode === 'open' ? 'open' : gateway ? 'gateway' : 'none',
    limits: limitsOf(policy),
    seccomp: policy.cell.mode !== 'breakglass',
    tty: parts.tty,
    ...(egress.wiring ? { egress: egress.wiring } : {}),
  };
  if (spec.argv.length === 0)
    throw new AgentcellError('USAGE', 'no command given: agentcell run [options] -- COMMAND [ARGS...]');
  return spec;
}

/** The caller's own ids in the cell (1000 for a root caller), 0 only when the policy asks for root. */
function cellIdentity(policy: Policy): CellSpec['identity'] {
  if (policy.cell.user === 'root') return { uid: 0, gid: 0 };
  const uid = process.getuid?.() ?? 1000;
  const gid = process.getgid?.() ?? 1000;
  return { uid: uid === 0 ? 1000 : uid, gid: gid === 0 ? 1000 : gid };
}

function limitsOf(policy: Policy): CellSpec['limits'] {
  const { timeout, pids, memory, cpus, disk } = policy.resources;
  return {
    ...(timeout !== undefined ? { timeoutMs: parseDuration(timeout) } : {}),
    ...(pids !== undefined ? { pids } : {}),
    ...(memory !== undefined ? { memoryBytes: parseSize(memory) } : {}),
    ...(cpus !== undefined ? { cpus } : {}),
    diskBytes: parseSize(disk),
  };
}
