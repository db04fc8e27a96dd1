import { homedir } from 'node:os';
import type { Backend, BackendPlan, CellSpec } from '../backends/backend.js';
import { createBackend, resolveCellImage } from '../backends/select-backend.js';
import type { PodmanDigestCache } from '../backends/podman-digest-cache.js';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import type { AgentcellPaths } from '../paths.js';
import type { Assurance } from '../policy/assurance.js';
import { sourceOf, type ResolvedPolicy } from '../policy/resolve-policy.js';
import type { SecretScanCache } from '../workspace/secret-scan.js';
import type { OverlayDriver } from '../workspace/overlay/overlay-mount.js';
import type { RunEgress } from '../egress/gateway/run-gateway.js';
import { prepareAgent, type AgentCellParts, type PreparedAgent } from '../agents/prepare-agent.js';
import { buildCellEnvironment } from '../cell/cell-environment.js';
import { cellDir } from '../cell/cell-store.js';
import { envSecrets, proxySecretPlaceholders } from '../cell/resolve-secrets.js';
import { PhaseTimer } from './phase-timer.js';
import { runPolicy, cellOptionsOf, type RunPolicy } from './run-policy.js';
import { cellRootfs, hiddenPaths, layerStack, policyMounts } from './run-filesystem.js';
import { egressParts } from './run-egress.js';
import { cellSpec } from './run-spec.js';
import { runAssurance } from './run-assurance.js';
import { sealRun } from './replan.js';
import { withCanaries, type CanaryPlan } from '../evidence/canaries.js';
import { keyPaths } from '../receipts/signing-key.js';

/** What a user can say about one run; the CLI maps flags onto this one to one. */
export interface CellOptions {
  workspace?: string;
  cell?: string;
  policyFile?: string;
  backend?: string;
  image?: string;
  mode?: string;
  workspaceMode?: string;
  network?: string;
  allow?: string[];
  /** `NAME=VALUE` sets a value; `NAME` copies it from agentcell's environment. */
  env?: string[];
  timeout?: string;
  root?: boolean;
  ackBreakglass?: string;
  /** Run this agent's CLI through its adapter (src/agents/); the argv are its arguments. */
  agent?: string;
  /** `--agent-arg`: extra arguments for the agent, before the argv. */
  agentArgs?: string[];
}

export interface RunRequest extends CellOptions {
  /** Phase timings accumulate here when given (the CLI passes one started at launch). */
  timer?: PhaseTimer;
  argv: string[];
  /** The caller has a terminal on stdin. */
  tty: boolean;
  paths: AgentcellPaths;
  hostEnv?: NodeJS.ProcessEnv;
  cwd?: string;
  now?: Date;
}

/** The data of a prepared run, as planning produces it (see `PreparedRun`). */
export interface RunPlan {
  cell: string;
  workspace: string;
  resolved: ResolvedPolicy;
  spec: CellSpec;
  plan: BackendPlan;
  assurance: Assurance;
  /** network = allowlist: the gateway the run starts (holds the run's proxy token: never print it). */
  egress?: RunEgress;
  /** overlay: how the cell's layers are mounted (chosen at its first run, then kept). */
  overlayDriver?: OverlayDriver;
  /** network = allowlist: how the policy was resolved, so `agentcell allow` can resolve it again the same way. */
  policySource?: { options: CellOptions; cwd: string };
  /** The secret scan's cache, to be saved when the run goes ahead. */
  scanCache?: { path: string; cache: SecretScanCache };
  /** agentcell's own dirs masked in the cell that don't exist yet: the run makes them before the cell starts. */
  createOwnDirs?: string[];
  /** Secret-named paths git tracks in the workspace (readable from `.git/objects`); labeled, refused in strict. */
  trackedSecrets?: string[];
  /** The image digest cache (podman), to be saved when the run goes ahead. */
  digestCache?: { path: string; cache: PodmanDigestCache };
  /** An agent run: its toolchain and seeded home, readied by `readyAgent` before the run. */
  agent?: PreparedAgent;
  /** The enforcement canaries the prelude in `spec.argv` runs (src/evidence/canaries.ts). */
  canaries: CanaryPlan;
}

/**
 * Everything decided before anything runs; `--dry-run` prints this and stops. An
 * immutable value (typed deeply readonly and frozen): a change is a new value made by
 * `replan` (src/run/replan.ts). `backend` is the object that plans and runs it; `timer`
 * is not part of the plan but the one mutable recorder a run carries along, which each
 * phase marks (the CLI's, started at launch, or a fresh one).
 */
export type PreparedRun = DeepReadonly<RunPlan> & { readonly backend: Backend; readonly timer: PhaseTimer };

/**
 * Plans a run, step by step, without changing anything on the host: the policy, the
 * layer stack, the rootfs, what is hidden, the environment, the agent, the egress
 * wiring, the cell spec, the backend's plan, the assurance.
 */
export async function prepareRun(request: RunRequest): Promise<PreparedRun> {
  const hostEnv = request.hostEnv ?? process.env;
  const cwd = request.cwd ?? process.cwd();
  const timer = request.timer ?? new PhaseTimer();
  const home = hostEnv['HOME'] ?? homedir();
  const { paths } = request;

  const run = await runPolicy(request, cwd, hostEnv);
  timer.mark('policy');
  const { workspace, cell, resolved } = run;
  const { policy } = resolved;
  // Started now, read when planning: the engine answers while the workspace is scanned.
  const imageLookup = resolveCellImage(policy.cell.backend, policy.cell.image, hostEnv, paths.state);
  imageLookup.catch(() => undefined); // awaited below; a failure before then must not go unhandled
  const stack = layerStack(policy, paths, cell, hostEnv);
  const rootfs = cellRootfs(policy, paths, cell);
  const mounts = policyMounts(policy, home);
  const hidden = hiddenPaths({ policy, paths, hostEnv, workspace, stack, rootfs, mounts });
  timer.mark('scan');
  const baseEnv = cellEnvironment(run, hostEnv, home);
  const agent = await runAgent(request, run, home, hostEnv);
  // An agent's CLI goes first on the cell's PATH.
  const env = agent ? { ...baseEnv, PATH: `${agent.path}:${baseEnv['PATH'] ?? ''}` } : baseEnv;
  const egress = egressParts({
    policy,
    paths,
    cell,
    rootfs,
    cellPath: env['PATH'],
    cellNodeOptions: env['NODE_OPTIONS'],
    hostEnv,
    workspace,
  });
  const spec = cellSpec({
    policy,
    paths,
    cell,
    workspace,
    cwd,
    home,
    stack,
    rootfs,
    hidden,
    mounts,
    env: { ...env, ...egress.env },
    agent,
    egress,
    argv: request.argv,
    tty: request.tty,
  });
  // Enforcement canaries: the probe prelude in front of the command, and its dir (src/evidence/canaries.ts).
  const { spec: guarded, canaries } = withCanaries(spec, {
    cellDir: cellDir(paths, cell),
    mode: policy.cell.mode,
    hostPaths: [keyPaths(paths.config).dir, paths.state],
    hostHome: home,
    rootWritable: rootfs.kind === 'directory' && rootfs.overlay !== undefined,
    learn: policy.network.mode === 'learn',
    image: policy.cell.backend !== 'bwrap',
  });
  const image = await imageLookup;
  const planned = image ? { ...guarded, image: image.image } : guarded;
  const backend = createBackend(policy.cell.backend, { stateDir: paths.state, hostEnv });
  const plan = backend.plan(planned);
  timer.mark('plan');
  const assurance = runAssurance({
    policy,
    plan,
    spec: planned,
    stack,
    passEnv: run.passEnv,
    agent: agent?.agent,
    hidden,
  });

  return sealRun({
    cell,
    workspace,
    resolved,
    spec: planned,
    plan,
    assurance,
    backend,
    timer,
    canaries,
    // The gateway's, and what `agentcell allow` needs to resolve the policy again as this run did.
    ...(egress.egress ? { egress: egress.egress, policySource: { options: cellOptionsOf(request), cwd } } : {}),
    ...(stack?.driver ? { overlayDriver: stack.driver } : {}),
    ...(agent ? { agent: agent.agent } : {}),
    // Written by the run, not here: a dry run leaves no state behind.
    ...(hidden.scanCache ? { scanCache: hidden.scanCache } : {}),
    ...(hidden.createOwnDirs.length > 0 ? { createOwnDirs: hidden.createOwnDirs } : {}),
    ...(hidden.tracked.length > 0 ? { trackedSecrets: hidden.tracked } : {}),
    ...(image?.cacheUpdate ? { digestCache: image.cacheUpdate } : {}),
  });
}

/** An agent run: the mounts, PATH and argv that put its CLI in the cell (nothing is installed yet). */
async function runAgent(
  request: RunRequest,
  run: RunPolicy,
  home: string,
  hostEnv: NodeJS.ProcessEnv,
): Promise<AgentCellParts | undefined> {
  const { policy } = run.resolved;
  if (!policy.agent.name) return undefined;
  return prepareAgent({
    policy,
    nameSource: sourceOf(run.resolved, 'agent.name'),
    stateDir: request.paths.state,
    configDir: request.paths.config,
    cellDir: cellDir(request.paths, run.cell),
    cellHome: home,
    workspace: run.workspace,
    hostEnv,
    argv: request.argv,
  });
}

/** The cell's environment, built and never inherited (DESIGN "Environment"). */
function cellEnvironment(run: RunPolicy, hostEnv: NodeJS.ProcessEnv, home: string): Record<string, string> {
  const { policy } = run.resolved;
  return buildCellEnvironment({
    hostEnv,
    home,
    policyEnv: policy.env,
    passEnv: run.passEnv,
    secretEnv: { ...envSecrets(policy, hostEnv), ...proxySecretPlaceholders(policy) },
  });
}
