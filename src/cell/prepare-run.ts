import { existsSync, realpathSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Backend, BackendPlan, CellEgress, CellSpec, ExtraMount } from '../backends/backend.js';
import { createBackend, resolveCellImage } from '../backends/select-backend.js';
import type { PodmanDigestCache } from '../backends/podman-digest-cache.js';
import { AgentcellError } from '../errors.js';
import { readJsonFile } from '../_internal/read-json-file.js';
import {
  assertBreakglassAck,
  assertModeAllows,
  assertNoTrackedSecrets,
  assess,
  localDate,
  trackedSecretReasons,
  type Assurance,
} from '../policy/assurance.js';
import { resolvePolicy, sourceOf, type ResolvedPolicy } from '../policy/resolve-policy.js';
import type { Policy } from '../policy/schema.js';
import { parseDuration, parseSize } from '../policy/units.js';
import { existingControlPlane } from '../workspace/control-plane.js';
import { BUILT_IN_HIDE, scanSecrets, type SecretScanCache } from '../workspace/secret-scan.js';
import { hostSystemDirs } from '../backends/host-rootfs.js';
import { agentcellOwnDirs, type AgentcellPaths } from '../paths.js';
import { ownDirMasks, type BoundSource } from './own-dir-masks.js';
import { sha256 } from '../_internal/canonical-hash.js';
import { buildCellEnvironment } from './cell-environment.js';
import { checkCellName, defaultCellName } from './cell-name.js';
import { PhaseTimer } from './phase-timer.js';
import { envSecrets, proxySecretPlaceholders } from './resolve-secrets.js';
import { planInspection, refuseWithoutGateway } from './plan-inspection.js';
import { cellDir } from './cell-store.js';
import { cellSshMounts } from './cell-ssh-key.js';
import {
  chooseOverlayDriver,
  overlayTools,
  overlayWrapper,
  type OverlayDriver,
  type OverlayTools,
} from '../workspace/overlay/overlay-mount.js';
import { visibleInLayers } from '../workspace/overlay/layer-visibility.js';
import { peekLayerStack, type LayerStack } from '../workspace/overlay/layer-stack.js';
import { hostOverlayMount } from '../workspace/overlay/host-overlay-mount.js';
import { rootfsOverlay } from '../workspace/overlay/rootfs-overlay.js';
import { newProxyToken } from '../egress/proxy-auth.js';
import { CELL_BRIDGE_NODE, cellEgressWiring, proxyEnvironment } from '../egress/proxy-environment.js';
import { bridgeScriptPath, cellNode, egressSocketDir, type RunEgress } from '../egress/run-gateway.js';
import { agentAdapter } from '../agents/agent-registry.js';
import { listImageRecords } from '../images/cell-image.js';
import { agentPolicyLayer } from '../agents/agent-policy-layer.js';
import { agentAssuranceReasons, prepareAgent, type PreparedAgent } from '../agents/prepare-agent.js';
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

/** Everything decided before anything runs; `--dry-run` prints this and stops. */
export interface PreparedRun {
  cell: string;
  workspace: string;
  resolved: ResolvedPolicy;
  spec: CellSpec;
  plan: BackendPlan;
  assurance: Assurance;
  backend: Backend;
  timer: PhaseTimer;
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

export async function prepareRun(request: RunRequest): Promise<PreparedRun> {
  const hostEnv = request.hostEnv ?? process.env;
  const cwd = request.cwd ?? process.cwd();
  const timer = request.timer ?? new PhaseTimer();
  const { workspace, resolved, passEnv } = await resolveCellPolicy(request, request.paths, cwd, hostEnv);
  timer.mark('policy');
  const cell = request.cell !== undefined ? checkCellName(request.cell) : defaultCellName(workspace);
  const { policy } = resolved;
  assertBreakglassAck(policy.cell.mode, request.ackBreakglass, localDate(request.now));
  assertModeAllows(policy, (key) => sourceOf(resolved, key));
  assertBuilt(policy, resolved, request.paths.state);
  // Started now, read when planning: the engine answers while the workspace is scanned.
  const imageLookup = resolveCellImage(policy.cell.backend, policy.cell.image, hostEnv, request.paths.state);
  imageLookup.catch(() => undefined); // awaited below; a failure before then must not go unhandled

  const home = hostEnv['HOME'] ?? homedir();
  const workspaceMode = policy.workspace.mode;
  const hostUid = process.getuid?.() ?? 1000;
  const hostGid = process.getgid?.() ?? 1000;
  const root = policy.cell.user === 'root';
  const stack =
    workspaceMode === 'overlay'
      ? withDriver(peekLayerStack(cellDir(request.paths, cell)), request.paths, hostEnv)
      : undefined;
  // In an overlay cell a path deleted by an earlier run is gone; binding onto it would recreate it.
  const visible = (rel: string): boolean => stack === undefined || visibleInLayers(stack, rel);
  const rootfs: CellSpec['rootfs'] =
    policy.cell.rootfs === 'host' ? { kind: 'host' } : directoryRootfs(policy.cell.rootfs, request.paths, cell);
  const policyMounts = policy.mount.map((m) => resolveMount(m, home));
  const own = ownDirMasks(
    agentcellOwnDirs(request.paths, hostEnv),
    boundSources(workspace, policyMounts, rootfs, policy.cell.backend),
    workspace,
  );
  const scanCacheFile = join(request.paths.state, 'scan-cache', `${sha256(workspace).slice(0, 16)}.json`);
  const scan = scanSecrets(
    workspace,
    {
      hide: [...BUILT_IN_HIDE, ...policy.workspace.hide],
      expose: policy.workspace.expose,
      skip: policy.workspace.scan_skip,
      prune: own.inWorkspace,
    },
    readJsonFile<SecretScanCache>(scanCacheFile),
  );
  assertNoTrackedSecrets(policy.cell.mode, scan.tracked);
  const inWorkspace = (target: string): boolean => isInside(workspace, target, false);
  // A secret-named link into agentcell's own dirs needs no mask of its own: one can't go inside another.
  const scanMasks = scan.masked
    .map((m) => ({ target: m.path, kind: m.kind }))
    .filter((m) => !own.masks.some((o) => isInside(o.target, m.target, false)));
  const masks = [...scanMasks, ...own.masks].filter(
    (m) => !inWorkspace(m.target) || visible(relative(workspace, m.target)),
  );
  timer.mark('scan');
  const gateway = policy.network.mode === 'allowlist';
  const cellEnv = buildCellEnvironment({
    hostEnv,
    home,
    policyEnv: policy.env,
    passEnv,
    secretEnv: { ...envSecrets(policy, hostEnv), ...proxySecretPlaceholders(policy) },
  });
  const agent = policy.agent.name
    ? await prepareAgent({
        policy,
        nameSource: sourceOf(resolved, 'agent.name'),
        stateDir: request.paths.state,
        configDir: request.paths.config,
        cellDir: cellDir(request.paths, cell),
        cellHome: home,
        workspace,
        hostEnv,
        argv: request.argv,
      })
    : undefined;
  if (agent) cellEnv['PATH'] = `${agent.path}:${cellEnv['PATH'] ?? ''}`;
  let egress: RunEgress | undefined;
  let egressWiring: CellEgress | undefined;
  let trustMounts: ExtraMount[] = [];
  if (!gateway) refuseWithoutGateway(policy);
  if (gateway) {
    const node = cellNode(rootfs, cellEnv['PATH']);
    const dir = cellDir(request.paths, cell);
    const socketDir = egressSocketDir(dir);
    const { allow, deny, resolve, inspect, rule } = policy.network;
    egress = {
      token: newProxyToken(),
      rules: { allow, deny, resolve, inspect, rule },
      socketDir,
      logDir: join(dir, 'egress'),
    };
    Object.assign(cellEnv, proxyEnvironment(egress.token, 'bind' in node ? CELL_BRIDGE_NODE : node.path));
    const inspection = planInspection(policy, { cellDir: dir, rootfs, hostEnv, workspace });
    if (inspection) {
      egress.inspect = inspection.run;
      Object.assign(cellEnv, inspection.env);
      trustMounts = inspection.mounts;
    }
    egressWiring = cellEgressWiring(join(socketDir, 'egress.sock'), bridgeScriptPath(), node);
  }
  const cellSpec: CellSpec = {
    cell,
    rootfs,
    workspace: stack
      ? { path: workspace, mode: workspaceMode, overlay: workspaceOverlay(stack, workspace) }
      : { path: workspace, mode: workspaceMode },
    masks,
    readonlyPaths:
      workspaceMode === 'readonly'
        ? []
        : existingControlPlane(workspace)
            .filter(visible)
            .map((p) => join(workspace, p)),
    mounts: [
      ...(agent?.mounts ?? []),
      ...policyMounts,
      ...trustMounts,
      ...(policy.network.mode === 'none'
        ? []
        : cellSshMounts(request.paths, cell, home, { gateway, rootfs: rootfs.kind === 'host' ? '/' : rootfs.path })),
    ],
    home,
    cwd: isInside(workspace, cwd) ? realpathSync(cwd) : workspace,
    argv: agent?.argv ?? request.argv,
    env: cellEnv,
    identity: root ? { uid: 0, gid: 0 } : { uid: hostUid === 0 ? 1000 : hostUid, gid: hostGid === 0 ? 1000 : hostGid },
    network: policy.network.mode === 'open' ? 'open' : gateway ? 'gateway' : 'none',
    limits: limitsOf(policy),
    seccomp: policy.cell.mode !== 'breakglass',
    tty: request.tty,
  };
  if (egressWiring) cellSpec.egress = egressWiring;
  if (cellSpec.argv.length === 0)
    throw new AgentcellError('USAGE', 'no command given: agentcell run [options] -- COMMAND [ARGS...]');
  // Enforcement canaries (src/evidence/canaries.ts): the probe prelude in front of the command, and its dir.
  const { spec, canaries } = withCanaries(cellSpec, {
    cellDir: cellDir(request.paths, cell),
    mode: policy.cell.mode,
    hostPaths: [keyPaths(request.paths.config).dir, request.paths.state],
    hostHome: home,
    rootWritable: rootfs.kind === 'directory' && rootfs.overlay !== undefined,
    image: policy.cell.backend !== 'bwrap',
  });
  const image = await imageLookup;
  if (image) spec.image = image.image;
  const backend = createBackend(policy.cell.backend, { stateDir: request.paths.state, hostEnv });
  const plan = backend.plan(spec);
  timer.mark('plan');
  const extra = [
    ...plan.gaps,
    ...(stack?.driver === 'fuse-overlayfs' ? ['workspace overlay through fuse-overlayfs, not the kernel'] : []),
    ...(stack?.driver === 'copy'
      ? ['workspace overlay by the copy driver: no overlay mount here, a copy per run']
      : []),
    ...passEnv.map((name) => `host variable ${name} passed in`),
    ...(spec.seccomp ? [] : ['seccomp filter off']),
    ...(agent ? agentAssuranceReasons(agent.agent) : []),
    ...trackedSecretReasons(scan.tracked, scan.unchecked),
  ];
  const prepared: PreparedRun = {
    cell,
    workspace,
    resolved,
    spec,
    plan,
    assurance: assess(policy, extra),
    backend,
    timer,
    canaries,
  };
  if (egress) Object.assign(prepared, { egress, policySource: { options: cellOptionsOf(request), cwd } });
  if (stack?.driver) prepared.overlayDriver = stack.driver;
  if (agent) prepared.agent = agent.agent;
  // Written by the run, not here: a dry run leaves no state behind.
  if (scan.changed) prepared.scanCache = { path: scanCacheFile, cache: scan.cache };
  if (own.create.length > 0) prepared.createOwnDirs = own.create;
  if (scan.tracked.length > 0) prepared.trackedSecrets = scan.tracked;
  if (image?.cacheUpdate) prepared.digestCache = image.cacheUpdate;
  return prepared;
}

function cellOptionsOf(request: RunRequest): CellOptions {
  const { workspace, cell, policyFile, backend, mode, workspaceMode, network, allow, env, timeout, root } = request;
  return { workspace, cell, policyFile, backend, mode, workspaceMode, network, allow, env, timeout, root };
}

/** The policy a run with these options would get; `policy show|explain` use it too, so they never disagree. */
export async function resolveCellPolicy(
  options: CellOptions,
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

/** Command-line flags as the highest policy layer; `--env NAME` stays out of it (values may be secrets). */
function flagsLayer(options: CellOptions): { layer: Record<string, unknown>; passEnv: string[] } {
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
  if (options.allow?.length) set('network', 'allow', options.allow);
  set('resources', 'timeout', options.timeout);
  set('agent', 'name', options.agent);
  if (options.agentArgs?.length) set('agent', 'args', options.agentArgs);
  const passEnv: string[] = [];
  for (const item of options.env ?? []) {
    const eq = item.indexOf('=');
    if (eq === -1) passEnv.push(item);
    else set('env', item.slice(0, eq), item.slice(eq + 1));
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

/** A directory rootfs, read-only underneath and writable through the cell's own layer. */
function directoryRootfs(dir: string, paths: AgentcellPaths, cell: string): CellSpec['rootfs'] {
  const path = resolveRootfs(dir);
  const { argvPrefix, merged } = rootfsOverlay(path, cellDir(paths, cell), requireOverlayTools());
  return { kind: 'directory', path, overlay: { argvPrefix, merged } };
}

function resolveRootfs(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    throw new AgentcellError(
      'POLICY_INVALID',
      `cell.rootfs: directory ${dir} does not exist (build one with agentcell image build --rootfs)`,
    );
  }
}

function resolveMount(mount: Policy['mount'][number], home: string): ExtraMount {
  const expand = (p: string): string => (p === '~' ? home : p.startsWith('~/') ? join(home, p.slice(2)) : p);
  const source = expand(mount.source);
  const target = expand(mount.target ?? mount.source);
  if (!isAbsolute(source) || !isAbsolute(target))
    throw new AgentcellError(
      'POLICY_INVALID',
      `[[mount]] ${mount.source}: source and target must be absolute paths (or start with ~/)`,
    );
  if (!existsSync(source)) throw new AgentcellError('POLICY_INVALID', `[[mount]] source ${source} does not exist`);
  return { source: realpathSync(source), target, mode: mount.mode };
}

/** Host directories bound into the cell, where agentcell's own dirs must not show. */
function boundSources(
  workspace: string,
  mounts: readonly ExtraMount[],
  rootfs: CellSpec['rootfs'],
  backend: Policy['cell']['backend'],
): BoundSource[] {
  const sources: BoundSource[] = [{ source: workspace, target: workspace, what: 'the workspace' }];
  for (const m of mounts) sources.push({ source: m.source, target: m.target, what: `[[mount]] ${m.source}` });
  if (rootfs.kind === 'directory')
    sources.push({ source: rootfs.path, target: '/', what: `cell.rootfs ${rootfs.path}` });
  else if (backend === 'bwrap')
    for (const entry of hostSystemDirs())
      if (entry.kind === 'dir')
        sources.push({ source: entry.path, target: entry.path, what: `the host's ${entry.path}` });
  return sources;
}

function limitsOf(policy: Policy): CellSpec['limits'] {
  const { timeout, pids, memory, cpus, disk } = policy.resources;
  const limits: CellSpec['limits'] = {};
  if (timeout !== undefined) limits.timeoutMs = parseDuration(timeout);
  if (pids !== undefined) limits.pids = pids;
  if (memory !== undefined) limits.memoryBytes = parseSize(memory);
  if (cpus !== undefined) limits.cpus = cpus;
  limits.diskBytes = parseSize(disk);
  return limits;
}

function isInside(parent: string, child: string, resolveChild = true): boolean {
  try {
    const real = resolveChild ? realpathSync(child) : child;
    const rel = relative(parent, real);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel) && !rel.startsWith(`..${sep}`));
  } catch {
    return false;
  }
}

/** A new cell's stack gets the driver this host supports (a probe, once per cell); an existing one keeps its own. */
function withDriver(stack: LayerStack, paths: AgentcellPaths, hostEnv: NodeJS.ProcessEnv): LayerStack {
  if (stack.driver !== undefined) return stack;
  return { ...stack, driver: chooseOverlayDriver(paths.state, hostEnv).driver };
}

/** The overlay of a layer stack over the workspace, as each backend mounts it. */
export function workspaceOverlay(stack: LayerStack, workspace: string): NonNullable<CellSpec['workspace']['overlay']> {
  if (stack.driver === 'copy') return { argvPrefix: [], merged: stack.merged };
  const { argvPrefix, merged } = overlayWrapper(stack, workspace, requireOverlayTools());
  return { argvPrefix, merged, hostMount: hostOverlayMount(stack, workspace).hold };
}

function requireOverlayTools(): OverlayTools {
  const tools = overlayTools();
  if (!tools)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      'overlay workspaces need unshare and mount (util-linux): sudo apt-get install util-linux, or use --workspace-mode direct',
    );
  return tools;
}
