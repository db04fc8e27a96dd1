import { existsSync, lstatSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CellSpec } from '../../backends/backend.js';
import { sha256 } from '../../_internal/canonical-hash.js';
import { splitHostPort } from '../../policy/host-pattern.js';
import { AgentcellError } from '../../errors.js';
import type { CellCaFiles } from '../cell/cell-trust.js';
import type { EgressGateway, GatewayInspectOptions, GatewayRules } from './egress-gateway.js';
import type { EgressCounters } from '../log/egress-log.js';
import { normalizeHost } from '../rules/host-rules.js';
import { CELL_PROXY_PORT, type BridgeNode } from '../cell/proxy-environment.js';
import type { ProxySecret } from '../rules/inspect-rules.js';
import { makeDirs } from '../../_internal/make-dirs.js';
import { readyCellCaPem, writeTrustBundle } from '../cell/ready-cell-ca.js';
import type { LeafMinter } from '../cell/cell-ca.js';
import { openLeafCache, type LeafCache } from '../cell/leaf-cache.js';
import { upstreamAnchorsFile } from './upstream-trust.js';
import { bindGatewaySocket } from './gateway-socket.js';
import type { SecureContext } from 'node:tls';
import { neutralRuntimeDir } from '../../_internal/neutral-dir.js';

/** A unix socket path is at most 107 bytes on Linux; leave room. */
const MAX_SOCKET_PATH = 100;

/** What a gateway run needs besides the cell spec; never printed (the token is a credential). */
export interface RunEgress {
  token: string;
  rules: GatewayRules;
  /** TLS inspection (inspect / rule / proxy secrets): the cell CA is loaded or made when the run starts. */
  inspect?: RunInspection;
  /** The private directory holding the socket; made when the run starts, removed when it ends. */
  socketDir: string;
  /** Where the run's JSONL egress logs go (`<dir>/<run>.jsonl`). */
  logDir: string;
}

/**
 * The private socket directory of a cell: `egress-<hash of the cell dir>` in agentcell's
 * directory on /dev/shm (the cell binds the socket, and its mountinfo shows the source's
 * path within its filesystem: see neutral-dir.ts), else `<cellDir>/egress/socket`. A cell
 * runs one command at a time (the cell lock), so the path is fixed and a dry run shows
 * the real one. When it would make the socket path too long, a per-user directory under
 * the system temp dir stands in (checked to be ours and private before use).
 */
export function egressSocketDir(cellDir: string): string {
  const neutral = neutralRuntimeDir();
  if (neutral) return join(neutral, `egress-${sha256(cellDir).slice(0, 16)}`);
  return privateSocketDir(cellDir, 'socket', 'egress.sock');
}

/**
 * The private directory of the running cell's control socket, `<cellDir>/egress/control`
 * (same fallback): the host side only, never mounted into the cell.
 */
export function egressControlDir(cellDir: string): string {
  return privateSocketDir(cellDir, 'control', 'control.sock');
}

function privateSocketDir(cellDir: string, name: string, socket: string): string {
  const dir = join(cellDir, 'egress', name);
  if (Buffer.byteLength(join(dir, socket)) <= MAX_SOCKET_PATH) return dir;
  const base = join(tmpdir(), `agentcell-${process.getuid?.() ?? 'user'}`, sha256(cellDir).slice(0, 16));
  return name === 'socket' ? base : `${base}-${name}`;
}

/** The bridge script on the host: `dist/agentcell-bridge.cjs` (cell-bridge-main.ts bundled: node builtins only). */
export function bridgeScriptPath(): string {
  // From dist/src/egress/gateway/ (the library) or dist/ (the bundled CLI, where import.meta.url is the bundle).
  const candidates = ['../../../agentcell-bridge.cjs', './agentcell-bridge.cjs'].map((p) =>
    fileURLToPath(new URL(p, import.meta.url)),
  );
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined)
    throw new AgentcellError('BACKEND_UNAVAILABLE', `the egress bridge script is missing (${candidates.join(', ')})`);
  return found;
}

/**
 * node to run the bridge in the cell: on the host rootfs agentcell's own node is bound
 * in (it runs the bridge for sure); a directory rootfs must bring its own.
 */
export function cellNode(rootfs: CellSpec['rootfs'], path: string | undefined): BridgeNode {
  if (rootfs.kind === 'host') return { bind: process.execPath };
  for (const dir of (path ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    if (!dir.startsWith('/')) continue;
    const candidate = join(dir, 'node');
    try {
      lstatSync(join(rootfs.path, candidate));
      return { path: candidate };
    } catch {
      // not in this directory
    }
  }
  throw new AgentcellError(
    'BACKEND_UNAVAILABLE',
    `network.mode = "allowlist" needs node inside the cell for the egress bridge, and the rootfs ${rootfs.path} has none on PATH: install node in the image, or use network.mode = "none"`,
  );
}

/** What a run with TLS inspection needs; holds secret values: never print it. */
export interface RunInspection {
  ca: CellCaFiles;
  /** The rootfs's system CA bundle on the host, for the cell's trust bundle. */
  systemBundle: string | undefined;
  /** PEM text the upstream certificates must chain to (system CAs + `upstream_ca`). */
  upstreamCa: string[];
  secrets: ProxySecret[];
}

export interface RunningGateway {
  /**
   * The gateway once it serves. The cell may start before: its socket listens already
   * (connections wait), and the cell's proxy listener is adopted only after this.
   * Rejects when the gateway could not start; the socket is then closed.
   */
  ready: Promise<EgressGateway>;
  logPath: string;
  /** The run's spy log, when it inspects anything (`<dir>/<run>.spy.jsonl`). */
  spyLogPath?: string;
  /**
   * RunControl.adoptListener: once the gateway serves, takes the cell's proxy listener when
   * it is what the cell's proxy variables name, 127.0.0.1:CELL_PROXY_PORT over TCP (the
   * cell made it in its own network namespace); anything else, or a gateway that did not
   * start, is refused.
   */
  adoptListener: (listener: Server) => Promise<boolean>;
  /** Closes the gateway (flushing the log), removes the socket directory; the final counts. */
  stop(): Promise<EgressCounters>;
}

/**
 * Makes the private socket directory and the socket the cell binds, and the trust bundle
 * the cell binds (inspection); resolves then, so the cell can start while the gateway's
 * modules load and its logs open (`ready`). Fails closed: a gateway that does not come up
 * refuses the cell's listener, and the cell's command never runs.
 */
export async function startRunGateway(
  egress: RunEgress,
  socketPath: string,
  ids: { cell: string; run: string },
  hooks: Pick<GatewayInspectOptions, 'onLlmRequest'> = {},
): Promise<RunningGateway> {
  makePrivateDir(egress.socketDir);
  makeDirs(egress.logDir, 0o700);
  const logPath = join(egress.logDir, `${ids.run}.jsonl`);
  rmSync(socketPath, { force: true }); // a killed run's leftover
  const spyLogPath = egress.inspect ? join(egress.logDir, `${ids.run}.spy.jsonl`) : undefined;
  const inspect = egress.inspect
    ? { ...(await prepareInspection(egress.inspect, egress.rules, ids.cell, spyLogPath)), ...hooks }
    : undefined;
  const socket = await bindGatewaySocket(socketPath).catch((cause: unknown) => {
    throw cannotStart(egress, cause);
  });
  const ready = (async () => {
    // From the next turn of the event loop: what the caller does at once (start the cell) goes first.
    await new Promise((resolve) => setImmediate(resolve));
    // Loaded here, not at the top: it brings node:http and node:dns, which runs without network never need.
    const { createEgressGateway } = await import('./egress-gateway.js');
    const gateway = createEgressGateway({
      rules: egress.rules,
      ...(inspect ? { inspect } : {}),
      token: egress.token,
      socketPath,
      socket,
      logPath,
      cell: ids.cell,
      run: ids.run,
    });
    try {
      await gateway.listen();
    } catch (cause) {
      throw cannotStart(egress, cause);
    }
    return gateway;
  })();
  ready.catch(() => socket.close());
  return {
    ready,
    logPath,
    ...(spyLogPath !== undefined ? { spyLogPath } : {}),
    adoptListener: async (listener) => {
      const gateway = await ready.catch(() => undefined);
      const address = listener.address();
      const expected =
        typeof address === 'object' &&
        address !== null &&
        address.family === 'IPv4' &&
        address.address === '127.0.0.1' &&
        address.port === CELL_PROXY_PORT;
      return expected && gateway !== undefined && gateway.adopt(listener);
    },
    stop: async () => {
      const gateway = await ready.catch(() => undefined);
      await gateway?.close();
      socket.close();
      rmSync(egress.socketDir, { recursive: true, force: true });
      return gateway?.counters() ?? { allowed: 0, denied: 0 };
    },
  };
}

function cannotStart(egress: RunEgress, cause: unknown): AgentcellError {
  rmSync(egress.socketDir, { recursive: true, force: true });
  return new AgentcellError('BACKEND_UNAVAILABLE', `cannot start the egress gateway: ${(cause as Error).message}`, {
    cause,
  });
}

/**
 * Writes the trust bundle the cell binds, before the cell starts, and gives the gateway its
 * leaf minter. A CA on disk that can serve as it is (ready-cell-ca.ts) is all the cell needs:
 * loading @peculiar/x509 and the CA key, and minting the leaves of the names known now, wait
 * for the gateway's warm-up, once the cell is on its way (its first connection waits for the
 * minter, not the other way round). A missing, expiring or damaged CA is made, renewed or
 * refused here, before the cell starts, as before.
 */
async function prepareInspection(
  inspection: RunInspection,
  rules: GatewayRules,
  cell: string,
  spyLogPath: string | undefined,
): Promise<GatewayInspectOptions> {
  const names = literalNames(rules, inspection);
  const readyPem = readyCellCaPem(inspection.ca);
  let leaves: GatewayInspectOptions['leaves'];
  if (readyPem !== undefined) {
    writeTrustBundle(inspection.ca, readyPem, inspection.systemBundle);
    leaves = deferredLeaves(inspection.ca, openLeafCache(inspection.ca, readyPem), names);
  } else {
    const { createLeafMinter, loadOrCreateCellCa } = await import('../cell/cell-ca.js');
    const ca = await loadOrCreateCellCa(inspection.ca, cell);
    writeTrustBundle(inspection.ca, ca.certPem, inspection.systemBundle);
    leaves = createLeafMinter(ca, { cache: openLeafCache(inspection.ca, ca.certPem) });
    premint(leaves, [...names]);
  }
  return {
    leaves,
    upstreamCa: inspection.upstreamCa,
    upstreamAnchors: upstreamAnchorsFile(inspection.ca.upstreamAnchors),
    secrets: inspection.secrets,
    ...(spyLogPath !== undefined ? { spyLogPath } : {}),
  };
}

/**
 * The leaves of a ready CA: a valid one an earlier run minted is served from the cache; the
 * minter (@peculiar/x509 and the CA key) is loaded only for a name without one, at the
 * warm-up or that name's first connection, whichever comes first.
 */
function deferredLeaves(files: CellCaFiles, cache: LeafCache, names: Set<string>): GatewayInspectOptions['leaves'] {
  let minter: Promise<LeafMinter> | undefined;
  const load = (): Promise<LeafMinter> =>
    (minter ??= import('../cell/cell-ca.js').then(async ({ createLeafMinter, loadCellCa }) =>
      createLeafMinter(await loadCellCa(files), { cache }),
    ));
  const cached = new Map<string, SecureContext | undefined>();
  const fromCache = (host: string): SecureContext | undefined => {
    if (!cached.has(host)) cached.set(host, cache.context(host));
    return cached.get(host);
  };
  return {
    secureContext: (host) => {
      const context = fromCache(host);
      return context ? Promise.resolve(context) : load().then((m) => m.secureContext(host));
    },
    warmUp: () => {
      const missing = [...names].filter((host) => fromCache(host) === undefined);
      if (missing.length === 0) return;
      // A failure here is the first connection's too, which fails closed with it.
      load().then(
        (m) => premint(m, missing),
        () => undefined,
      );
    },
  };
}

/** Mints the leaves of the names known now, so the first connection to each finds it ready. */
function premint(leaves: LeafMinter, names: readonly string[]): void {
  for (const host of names) leaves.secureContext(host).catch(() => undefined);
}

/** Inspected names without a wildcard (ports dropped), lower-case. */
function literalNames(rules: GatewayRules, inspection: RunInspection): Set<string> {
  const patterns = [
    ...(rules.inspect ?? []),
    ...(rules.rule ?? []).map((r) => r.host),
    ...inspection.secrets.map((s) => s.host),
  ];
  const names = new Set<string>();
  for (const pattern of patterns) {
    const host = normalizeHost(splitHostPort(pattern).host);
    if (host !== undefined && !pattern.includes('*')) names.add(host);
  }
  return names;
}

/** mkdir -m 700, refusing a path someone else made (it may sit in a shared temp dir). */
export function makePrivateDir(dir: string): void {
  makeDirs(dir, 0o700);
  const uid = process.getuid?.();
  const private_ = (path: string): boolean => {
    const stat = lstatSync(path);
    return stat.isDirectory() && (uid === undefined || stat.uid === uid) && (stat.mode & 0o077) === 0;
  };
  if (!private_(dir) || !private_(dirname(dir)))
    throw new AgentcellError(
      'BACKEND_UNAVAILABLE',
      `the socket directory ${dir} is not a private directory of this user; remove it and retry`,
    );
}
