import { realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { assertBreakglassAck, assertModeAllows, localDate } from '../policy/assurance.js';
import { isReservedName, reservedKeysError } from '../policy/reserved-names.js';
import { resolvePolicy, sourceOf, type ResolvedPolicy } from '../policy/resolve-policy.js';
import type { Policy } from '../policy/schema.js';
import { listImageRecords } from '../images/cell-image.js';
import { agentAdapter } from '../agents/agent-registry.js';
import { agentPolicyLayer } from '../agents/agent-policy-layer.js';
import { checkCellName, defaultCellName } from '../cell/cell-name.js';
import type { CellOptions, RunRequest } from './prepare-run.js';

/** The policy a run gets, the cell it runs in, and what the user passes from the host by name. */
export interface RunPolicy {
  workspace: string;
  cell: string;
  resolved: ResolvedPolicy;
  /** `--env NAME`: host variables copied in by explicit request. */
  passEnv: string[];
}

/** Step 1 of a run: resolve its policy and refuse what the mode or this build does not allow. */
export async function runPolicy(request: RunRequest, cwd: string, hostEnv: NodeJS.ProcessEnv): Promise<RunPolicy> {
  const { workspace, resolved, passEnv } = await resolveCellPolicy(request, request.paths, cwd, hostEnv);
  const cell = request.cell !== undefined ? checkCellName(request.cell) : defaultCellName(workspace);
  const { policy } = resolved;
  assertBreakglassAck(policy.cell.mode, request.ackBreakglass, localDate(request.now));
  assertModeAllows(policy, (key) => sourceOf(resolved, key));
  assertBuilt(policy, resolved, request.paths.state);
  return { workspace, cell, resolved, passEnv };
}

/** The policy a run with these options would get; `policy show|explain` use it too, so they never disagree. */
export async function resolveCellPolicy(
  options: DeepReadonly<CellOptions>,
  paths: AgentcellPaths,
  cwd: string = process.cwd(),
  hostEnv: NodeJS.ProcessEnv = process.env,
): Promise<{ workspace: string; resolved: ResolvedPolicy; passEnv: string[] }> {
  const workspace = resolveWorkspace(resolve(cwd, options.workspace ?? '.'));
  const { layer, passEnv } = flagsLayer(options);
  const resolved = await resolvePolicy({
    workspace,
    paths,
    flags: layer,
    agentLayer: (name, declared, networkMode) =>
      agentPolicyLayer(agentAdapter(name, 'agent.name'), hostEnv, declared, networkMode),
    ...(options.policyFile !== undefined ? { policyFile: resolve(cwd, options.policyFile) } : {}),
  });
  return { workspace, resolved, passEnv };
}

/**
 * The options `agentcell allow` resolves the policy again with, as the run did (no agent:
 * its layer is the run's). The lists are copies: the prepared run freezes what it holds.
 */
export function cellOptionsOf(request: CellOptions): CellOptions {
  const { workspace, cell, policyFile, backend, mode, workspaceMode, network, allow, env, timeout, root } = request;
  const lists = { allow: allow && [...allow], env: env && [...env] };
  return { workspace, cell, policyFile, backend, mode, workspaceMode, network, ...lists, timeout, root };
}

/**
 * Command-line flags as the highest policy layer; `--env NAME` stays out of it (values may
 * be secrets). Lists are copied: the resolved policy is frozen with the run, the caller's are not.
 */
function flagsLayer(options: DeepReadonly<CellOptions>): { layer: Record<string, unknown>; passEnv: string[] } {
  const layer: Record<string, Record<string, unknown>> = {};
  const set = (table: string, key: string, value: unknown): void => {
    if (value !== undefined) (layer[table] ??= {})[key] = value;
  };
  set('cell', 'backend', options.backend);
  set('cell', 'image', options.image);
  set('cell', 'mode', options.mode);
  if (options.root) set('cell', 'user', 'root');
  set('workspace', 'mode', options.workspaceMode);
  set('network', 'mode', options.network ?? (options.allow?.length ? 'allowlist' : undefined));
  if (options.allow?.length) set('network', 'allow', [...options.allow]);
  set('resources', 'timeout', options.timeout);
  set('agent', 'name', options.agent);
  if (options.agentArgs?.length) set('agent', 'args', [...options.agentArgs]);
  const passEnv: string[] = [];
  for (const item of options.env ?? []) {
    const eq = item.indexOf('=');
    const name = eq === -1 ? item : item.slice(0, eq);
    // `--env __proto__=x` would set the table's prototype and vanish; both forms name a key of the cell's env.
    if (isReservedName(name)) throw reservedKeysError('command line', [`env.${name}`]);
    if (eq === -1) passEnv.push(item);
    else set('env', name, item.slice(eq + 1));
  }
  return { layer, passEnv };
}

/** Values the schema accepts whose machinery lands in later work: refuse them plainly. */
function assertBuilt(policy: Policy, resolved: ResolvedPolicy, stateDir: string): void {
  const missing: string[] = [];
  if (policy.cell.backend !== 'bwrap' && policy.cell.rootfs !== 'host')
    missing.push(
      `cell.rootfs = "${policy.cell.rootfs}" (from ${sourceOf(resolved, 'cell.rootfs')}) with cell.backend = "${policy.cell.backend}": OCI cells run an image (cell.image); a directory rootfs is for bwrap`,
    );
  if (
    policy.cell.backend === 'bwrap' &&
    policy.cell.image !== undefined &&
    sourceOf(resolved, 'cell.image') === 'command line'
  )
    throw new AgentcellError(
      'USAGE',
      bwrapImageRefusal(policy.cell.image, sourceOf(resolved, 'cell.backend'), stateDir),
    );
  for (const [name, secret] of Object.entries(policy.secrets))
    if (secret.inject === 'file')
      missing.push(`secrets.${name}.inject = "file": only "env" and "proxy" injection are built so far`);
  if (missing.length > 0)
    throw new AgentcellError('NOT_AVAILABLE_YET', `not available yet:\n  ${missing.join('\n  ')}`);
}

/** `--image` on bwrap: an image is for OCI cells; bwrap runs the host or a directory rootfs. */
function bwrapImageRefusal(image: string, backendSource: string, stateDir: string): string {
  const built = listImageRecords(stateDir).find(
    (r) => r.tag === image && statSync(r.source, { throwIfNoEntry: false })?.isDirectory(),
  );
  const rootfs = built
    ? `set [cell] rootfs = "${built.source}" in agentcell.toml (the directory ${image} was built from) to run it on bwrap`
    : 'set [cell] rootfs = "DIR" in agentcell.toml to give bwrap a directory rootfs (agentcell image build --rootfs DIR makes one)';
  return `--image ${image}: bwrap cells (cell.backend from ${backendSource}) run no OCI image; use --backend podman|docker|gvisor for the image, or ${rootfs}`;
}

function resolveWorkspace(dir: string): string {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    throw new AgentcellError('WORKSPACE_INVALID', `workspace ${dir} does not exist`);
  }
  if (!statSync(real).isDirectory())
    throw new AgentcellError('WORKSPACE_INVALID', `workspace ${dir} is not a directory`);
  if (real === '/') throw new AgentcellError('WORKSPACE_INVALID', 'the root directory cannot be a workspace');
  return real;
}
