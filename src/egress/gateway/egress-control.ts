import { chmodSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { AgentcellError, type ErrorCode } from '../../errors.js';
import type { HostRules } from '../rules/host-rules.js';

/**
 * The host-side control channel of a running gateway: a unix socket (0600, in a private
 * 0700 directory of the cell's state that is never mounted into the cell) on which the
 * agentcell process running the cell takes reload requests. One JSON line in, one out.
 * A request carries no rules: the running process re-reads the host-side policy itself,
 * so whoever reaches the socket can only make it apply what the policy files say.
 */
export interface ReloadRequest {
  op: 'reload';
  dryRun: boolean;
  /** Who asks, for the run's receipt. Self-reported; only the cell owner's uid (or root) can reach the socket. */
  by: Requester;
}

export interface Requester {
  user: string;
  pid: number;
}

/** What a reload changed (or would change, on a dry run). */
export interface ReloadReport {
  run: string;
  dryRun: boolean;
  /** ISO 8601, when the running process handled it. */
  time: string;
  by: Requester;
  /** `sha256:` hash of the merged policy the reload read (applied unless a dry run). */
  policyHash: string;
  /** The policy files read, lowest precedence first. */
  files: string[];
  added: RuleEntries;
  removed: RuleEntries;
  /** Open tunnels and forward requests the new rules refuse, closed by this reload (0 on a dry run). */
  revoked: number;
}

/** Rules as flat lists; `resolve` entries as `name=IP`. */
export interface RuleEntries {
  allow: string[];
  deny: string[];
  resolve: string[];
}

export type ReloadReply =
  { ok: true; report: ReloadReport } | { ok: false; error: { code: ErrorCode; message: string } };

const MAX_REQUEST = 4096;

/** What changes from `before` to `after`, entry by entry. */
export function diffHostRules(before: HostRules, after: HostRules): { added: RuleEntries; removed: RuleEntries } {
  const flat = (rules: HostRules): RuleEntries => ({
    allow: [...(rules.allow ?? [])],
    deny: [...(rules.deny ?? [])],
    resolve: Object.entries(rules.resolve ?? {}).map(([name, ip]) => `${name}=${ip}`),
  });
  const [old, next] = [flat(before), flat(after)];
  const minus = (a: string[], b: string[]): string[] => [...new Set(a.filter((x) => !b.includes(x)))].sort();
  return {
    added: {
      allow: minus(next.allow, old.allow),
      deny: minus(next.deny, old.deny),
      resolve: minus(next.resolve, old.resolve),
    },
    removed: {
      allow: minus(old.allow, next.allow),
      deny: minus(old.deny, next.deny),
      resolve: minus(old.resolve, next.resolve),
    },
  };
}

export interface EgressControl {
  close(): Promise<void>;
}

/** Listens on `socketPath` (its directory must already be private) and answers reload requests with `handle`. */
export async function startEgressControl(
  socketPath: string,
  handle: (request: ReloadRequest) => Promise<ReloadReport>,
): Promise<EgressControl> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(10_000, () => socket.destroy());
    let input = '';
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => {
      input += data;
      const end = input.indexOf('\n');
      if (end === -1) {
        if (input.length > MAX_REQUEST) socket.destroy();
        return;
      }
      socket.removeAllListeners('data');
      void answer(input.slice(0, end), handle).then((reply) => socket.end(`${JSON.stringify(reply)}\n`));
    });
  });
  rmSync(socketPath, { force: true }); // a killed run's leftover
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          rmSync(socketPath, { force: true });
          resolve();
        });
      }),
  };
}

async function answer(line: string, handle: (request: ReloadRequest) => Promise<ReloadReport>): Promise<ReloadReply> {
  try {
    return { ok: true, report: await handle(parseRequest(line)) };
  } catch (error) {
    const known = error instanceof AgentcellError ? error : undefined;
    return {
      ok: false,
      error: { code: known?.code ?? 'INTERNAL', message: known?.message ?? `reload failed: ${String(error)}` },
    };
  }
}

function parseRequest(line: string): ReloadRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new AgentcellError('USAGE', 'control request: not JSON');
  }
  const request = value as Partial<ReloadRequest> | null;
  const by = request?.by as Partial<Requester> | null | undefined;
  if (
    request === null ||
    typeof request !== 'object' ||
    request.op !== 'reload' ||
    typeof request.dryRun !== 'boolean' ||
    typeof by !== 'object' ||
    by === null ||
    typeof by.user !== 'string' ||
    by.user.length > 256 ||
    !Number.isSafeInteger(by.pid)
  )
    throw new AgentcellError(
      'USAGE',
      'control request: expected {"op":"reload","dryRun":true|false,"by":{"user":NAME,"pid":N}}',
    );
  return { op: 'reload', dryRun: request.dryRun, by: { user: by.user, pid: by.pid as number } };
}

/** Sends one request to a control socket and returns the report; the run's own error is rethrown as is. */
export function requestEgressReload(
  socketPath: string,
  request: ReloadRequest,
  timeoutMs = 15_000,
): Promise<ReloadReport> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let output = '';
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () =>
      socket.destroy(new AgentcellError('CELL_NOT_RUNNING', `the running cell did not answer on ${socketPath}`)),
    );
    socket.on('data', (data: string) => (output += data));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        error instanceof AgentcellError
          ? error
          : new AgentcellError(
              'CELL_NOT_RUNNING',
              `cannot reach the running cell's control socket ${socketPath} (${error.code ?? error.message}); is its run still going, with --network allowlist?`,
            ),
      ),
    );
    socket.on('end', () => {
      let reply: ReloadReply;
      try {
        reply = JSON.parse(output) as ReloadReply;
      } catch {
        reject(new AgentcellError('INTERNAL', `the running cell answered junk on ${socketPath}`));
        return;
      }
      if (reply.ok) resolve(reply.report);
      else reject(new AgentcellError(reply.error.code, reply.error.message));
    });
    socket.write(`${JSON.stringify(request)}\n`);
  });
}
