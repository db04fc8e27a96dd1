import { existsSync, realpathSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import type { CellSpec, ExtraMount, MaskSpec } from '../backends/backend.js';
import { hostSystemDirs } from '../backends/host-rootfs.js';
import { AgentcellError } from '../errors.js';
import { sha256 } from '../_internal/canonical-hash.js';
import { agentcellOwnDirs, type AgentcellPaths } from '../paths.js';
import { assertNoTrackedSecrets } from '../policy/assurance.js';
import type { Policy } from '../policy/schema.js';
import { existingControlPlane } from '../workspace/control-plane.js';
import { BUILT_IN_HIDE, readScanCache, scanSecrets, type SecretScanCache } from '../workspace/secret-scan.js';
import {
  chooseOverlayDriver,
  overlayTools,
  overlayWrapper,
  type OverlayTools,
} from '../workspace/overlay/overlay-mount.js';
import { visibleInLayers } from '../workspace/overlay/layer-visibility.js';
import { peekLayerStack, type LayerStack } from '../workspace/overlay/layer-stack.js';
import { hostOverlayMount } from '../workspace/overlay/host-overlay-mount.js';
import { rootfsOverlay } from '../workspace/overlay/rootfs-overlay.js';
import { cellDir } from '../cell/cell-store.js';
import { ownDirMasks, type BoundSource } from '../cell/own-dir-masks.js';

/**
 * An overlay cell's layer stack as it stands now; a new cell's gets the driver this host
 * supports (a probe, once per cell), an existing one keeps its own. Undefined otherwise.
 */
export function layerStack(
  policy: Policy,
  paths: AgentcellPaths,
  cell: string,
  hostEnv: NodeJS.ProcessEnv,
): LayerStack | undefined {
  if (policy.workspace.mode !== 'overlay') return undefined;
  const stack = peekLayerStack(cellDir(paths, cell));
  if (stack.driver !== undefined) return stack;
  return { ...stack, driver: chooseOverlayDriver(paths.state, hostEnv).driver };
}

/** The host's root, or a directory rootfs read-only underneath and writable through the cell's own layer. */
export function cellRootfs(policy: Policy, paths: AgentcellPaths, cell: string): CellSpec['rootfs'] {
  if (policy.cell.rootfs === 'host') return { kind: 'host' };
  const path = resolveRootfs(policy.cell.rootfs);
  const { argvPrefix, merged } = rootfsOverlay(path, cellDir(paths, cell), requireOverlayTools());
  return { kind: 'directory', path, overlay: { argvPrefix, merged } };
}

/** `[[mount]]`s with `~` expanded, checked to exist. */
export function policyMounts(policy: Policy, home: string): ExtraMount[] {
  return policy.mount.map((m) => resolveMount(m, home));
}

/** What the cell must not see or write in what is bound into it. */
export interface HiddenPaths {
  masks: MaskSpec[];
  /** The workspace's control files (hooks, config), bound read-only over a writable workspace. */
  readonlyPaths: string[];
  /** agentcell's own dirs masked in the cell that don't exist yet: the run makes them before the cell starts. */
  createOwnDirs: string[];
  /** Secret-named paths git tracks (readable from `.git/objects`), and why some could not be checked. */
  tracked: string[];
  unchecked: string[];
  /** The secret scan's cache, when it changed: saved when the run goes ahead (a dry run writes nothing). */
  scanCache?: { path: string; cache: SecretScanCache };
}

/**
 * Masks for secret-named paths and agentcell's own dirs wherever a bound source shows
 * them, and the read-only control files; strict refuses a workspace whose git tracks secrets.
 */
export function hiddenPaths(context: {
  policy: Policy;
  paths: AgentcellPaths;
  hostEnv: NodeJS.ProcessEnv;
  workspace: string;
  stack: LayerStack | undefined;
  rootfs: CellSpec['rootfs'];
  mounts: readonly ExtraMount[];
}): HiddenPaths {
  const { policy, paths, workspace, stack } = context;
  // In an overlay cell a path deleted by an earlier run is gone; binding onto it would recreate it.
  const visible = (rel: string): boolean => stack === undefined || visibleInLayers(stack, rel);
  const own = ownDirMasks(
    agentcellOwnDirs(paths, context.hostEnv),
    boundSources(workspace, context.mounts, context.rootfs, policy.cell.backend),
    workspace,
  );
  const scanCacheFile = join(paths.state, 'scan-cache', `${sha256(workspace).slice(0, 16)}.json`);
  const scan = scanSecrets(
    workspace,
    {
      hide: [...BUILT_IN_HIDE, ...policy.workspace.hide],
      expose: policy.workspace.expose,
      skip: policy.workspace.scan_skip,
      prune: own.inWorkspace,
    },
    readScanCache(scanCacheFile),
  );
  assertNoTrackedSecrets(policy.cell.mode, scan.tracked);
  const inWorkspace = (target: string): boolean => isInside(workspace, target, false);
  // A secret-named link into agentcell's own dirs needs no mask of its own: one can't go inside another.
  const scanMasks = scan.masked
    .map((m) => ({ target: m.path, kind: m.kind }))
    .filter((m) => !own.masks.some((o) => isInside(o.target, m.target, false)));
  return {
    masks: [...scanMasks, ...own.masks].filter((m) => !inWorkspace(m.target) || visible(relative(workspace, m.target))),
    readonlyPaths:
      policy.workspace.mode === 'readonly'
        ? []
        : existingControlPlane(workspace)
            .filter(visible)
            .map((p) => join(workspace, p)),
    createOwnDirs: own.create,
    tracked: scan.tracked,
    unchecked: scan.unchecked,
    ...(scan.changed ? { scanCache: { path: scanCacheFile, cache: scan.cache } } : {}),
  };
}

/** The overlay of a layer stack over the workspace, as each backend mounts it. */
export function workspaceOverlay(stack: LayerStack, workspace: string): NonNullable<CellSpec['workspace']['overlay']> {
  if (stack.driver === 'copy') return { argvPrefix: [], merged: stack.merged };
  const { argvPrefix, merged } = overlayWrapper(stack, workspace, requireOverlayTools());
  return { argvPrefix, merged, hostMount: hostOverlayMount(stack, workspace).hold };
}

/** `child` is `parent` or inside it (`child` resolved through its links first, unless told not to). */
export function isInside(parent: string, child: string, resolveChild = true): boolean {
  try {
    const real = resolveChild ? realpathSync(child) : child;
    const rel = relative(parent, real);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel) && !rel.startsWith(`..${sep}`));
  } catch {
    return false;
  }
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

function requireOverlayTools(): OverlayTools {
  const tools = overlayTools();
  if (!tools)
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      'overlay workspaces need unshare and mount (util-linux): sudo apt-get install util-linux, or use --workspace-mode direct',
    );
  return tools;
}
