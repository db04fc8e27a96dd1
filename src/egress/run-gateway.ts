import { existsSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CellEgress, CellSpec } from '../backends/backend.js';
import { sha256 } from '../policy/canonical-hash.js';
import { AgentcellError } from '../errors.js';
import { createEgressGateway, type EgressGateway } from './egress-gateway.js';
import type { EgressCounters } from './egress-log.js';
import type { HostRules } from './host-rules.js';

/** A unix socket path is at most 107 bytes on Linux; leave room. */
const MAX_SOCKET_PATH = 100;

/** What a gateway run needs besides the cell spec; never printed (the token is a credential). */
export interface RunEgress {
  token: string;
  rules: HostRules;
  /** The private directory holding the socket; made when the run starts, removed when it ends. */
  socketDir: string;
  /** Where the run's JSONL egress logs go (`<dir>/<run>.jsonl`). */
  logDir: string;
}

/**
 * The private socket directory of a cell: `<cellDir>/egress/socket`. A cell runs one
 * command at a time (the cell lock), so the path is fixed and a dry run shows the real
 * one. When it would make the socket path too long, a per-user directory under the
 * system temp dir stands in (checked to be ours and private before use).
 */
export function egressSocketDir(cellDir: string): string {
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

/** The bridge script on the host (compiled `cell-bridge.js`: node builtins only, ESM). */
export function bridgeScriptPath(): string {
  // From dist/src/egress/ (the library) or dist/ (the bundled CLI, where import.meta.url is the bundle).
  const candidates = ['./cell-bridge.js', './src/egress/cell-bridge.js'].map((p) =>
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
export function cellNode(rootfs: CellSpec['rootfs'], path: string | undefined): CellEgress['node'] {
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

export interface RunningGateway {
  gateway: EgressGateway;
  logPath: string;
  /** Closes the gateway (flushing the log), removes the socket directory; the final counts. */
  stop(): Promise<EgressCounters>;
}

/** Makes the private socket directory and starts the run's gateway on it. Fails closed. */
export async function startRunGateway(
  egress: RunEgress,
  socketPath: string,
  ids: { cell: string; run: string },
): Promise<RunningGateway> {
  makePrivateDir(egress.socketDir);
  mkdirSync(egress.logDir, { recursive: true, mode: 0o700 });
  const logPath = join(egress.logDir, `${ids.run}.jsonl`);
  rmSync(socketPath, { force: true }); // a killed run's leftover
  const gateway = createEgressGateway({
    rules: egress.rules,
    token: egress.token,
    socketPath,
    logPath,
    cell: ids.cell,
    run: ids.run,
  });
  try {
    await gateway.listen();
  } catch (cause) {
    rmSync(egress.socketDir, { recursive: true, force: true });
    throw new AgentcellError('BACKEND_UNAVAILABLE', `cannot start the egress gateway: ${(cause as Error).message}`, {
      cause,
    });
  }
  return {
    gateway,
    logPath,
    stop: async () => {
      await gateway.close();
      rmSync(egress.socketDir, { recursive: true, force: true });
      return gateway.counters();
    },
  };
}

/** mkdir -m 700, refusing a path someone else made (it may sit in a shared temp dir). */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
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
