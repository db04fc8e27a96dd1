import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { onAbort } from '../_internal/on-abort.js';
import type { Socket } from 'node:net';
import { AgentcellError } from '../errors.js';
import type { RunOutcome } from './backend.js';
import { memoryLimitHit } from './cgroup-limits.js';
import type { DockerApiPlan } from './docker-api-container.js';
import { dockerGet, dockerMessage, dockerRequest, dockerUpgrade, type DockerResponse } from './docker-socket.js';
import { CELL_LABEL } from './oci-container.js';
import { FORWARDED_SIGNALS, KILL_GRACE_MS, TIMEOUT_EXIT_CODE } from './supervise-process.js';

/** What `docker run` exits with when the daemon reports no exit status. */
const ENGINE_ERROR_EXIT = 125;
/** 128 + SIGKILL: how the kernel's OOM killer ends a process. */
const SIGKILL_EXIT = 137;

export interface DockerApiRunOptions {
  tty: boolean;
  timeoutMs?: number;
  /** Where each variable named in the plan's `Env` gets its value (the plan's env). */
  env: Record<string, string>;
  /** Aborted: the cell is killed at once. */
  stop?: AbortSignal | undefined;
  /** `[resources] memory`, to name in the outcome when the container was OOM-killed. */
  memoryBytes?: number | undefined;
}

/**
 * Runs a cell through the Docker Engine API, as `docker run --rm -i` does through the
 * same API: create, attach, wait, start; relays stdio (demultiplexed unless there is a
 * terminal), forwards agentcell's signals and the timeout as `kill` requests, and returns
 * once the container has exited and is removed.
 */
export async function runDockerApi(
  plan: DeepReadonly<DockerApiPlan>,
  options: DockerApiRunOptions,
): Promise<RunOutcome> {
  const call = (method: 'POST' | 'DELETE', path: string, body?: string): Promise<DockerResponse> =>
    dockerRequest(plan.socket, method, path, body).catch((cause: unknown) => {
      throw new AgentcellError(
        'BACKEND_UNAVAILABLE',
        `the docker daemon does not answer on ${plan.socket} (${(cause as Error).message}); run agentcell doctor`,
        { cause },
      );
    });
  const env = plan.create.Env.filter((name) => options.env[name] !== undefined).map(
    (name) => `${name}=${options.env[name]}`,
  );
  const create = (): Promise<DockerResponse> =>
    call('POST', plan.createPath, JSON.stringify({ ...plan.create, Env: env }));
  let created = await create();
  // The name is taken: a container a killed agentcell left (same cell, same pid) goes, if it is a cell's.
  if (created.status === 409 && (await removeLeftover(plan, call))) created = await create();
  if (created.status !== 201) refused(created);
  const container = `/containers/${plan.name}`;
  try {
    const stream = await attach(plan.socket, plan.attachPath);
    let registered!: () => void;
    const waiting = new Promise<void>((resolve) => (registered = resolve));
    const exited = dockerRequest(plan.socket, 'POST', plan.waitPath, undefined, undefined, () => registered());
    exited.catch(() => undefined); // awaited below
    await Promise.race([waiting, exited]);
    const relay = relayStdio(stream, options.tty);
    const started = await call('POST', plan.startPath);
    if (started.status !== 204 && started.status !== 304) {
      relay.stop();
      // Created but never started: AutoRemove does not apply, so remove it here.
      await call('DELETE', `${container}?force=1`).catch(() => undefined);
      refused(started);
    }
    const kill = (signal: NodeJS.Signals): void => {
      void call('POST', `${container}/kill?signal=${signal}`).catch(() => undefined);
    };
    const supervision = supervise(kill, options);
    const stopResizing = options.tty ? followTerminalSize(call, container) : () => undefined;
    try {
      const [result] = await Promise.all([exited, relay.done]);
      const { StatusCode, Error: error } = waitResult(result);
      if (error?.Message) process.stderr.write(`docker: ${error.Message}\n`);
      const exitCode = supervision.timedOut() ? TIMEOUT_EXIT_CODE : (StatusCode ?? ENGINE_ERROR_EXIT);
      const oomKilled = StatusCode === SIGKILL_EXIT && plan.inspectPath !== undefined && (await wasOomKilled(plan));
      if (plan.removePath) await call('DELETE', plan.removePath).catch(() => undefined);
      const outcome: RunOutcome = { exitCode, timedOut: supervision.timedOut() };
      return oomKilled && options.memoryBytes !== undefined
        ? { ...outcome, ...memoryLimitHit(options.memoryBytes) }
        : outcome;
    } finally {
      stopResizing();
      supervision.stop();
      relay.stop();
    }
  } catch (error) {
    // A container that never started is not auto-removed.
    await call('DELETE', `${container}?force=1`).catch(() => undefined);
    throw error;
  }
}

/** The container's `State.OOMKilled`: the daemon saw the kernel kill in its cgroup. */
async function wasOomKilled(plan: DeepReadonly<DockerApiPlan>): Promise<boolean> {
  if (plan.inspectPath === undefined) return false;
  try {
    const response = await dockerGet(plan.socket, plan.inspectPath);
    return (JSON.parse(response.body) as { State?: { OOMKilled?: unknown } }).State?.OOMKilled === true;
  } catch {
    return false;
  }
}

/** Removes the container holding the cell's name if agentcell made it for the same cell (its label says so). */
async function removeLeftover(
  plan: DeepReadonly<DockerApiPlan>,
  call: (method: 'POST' | 'DELETE', path: string) => Promise<DockerResponse>,
): Promise<boolean> {
  const container = `/containers/${plan.name}`;
  let labels: Record<string, string> | undefined;
  try {
    const response = await dockerGet(plan.socket, `${container}/json`);
    labels = (JSON.parse(response.body) as { Config?: { Labels?: Record<string, string> } }).Config?.Labels;
  } catch {
    return false;
  }
  const cell = plan.create.Labels[CELL_LABEL];
  if (cell === undefined || labels?.[CELL_LABEL] !== cell) return false;
  const removed = await call('DELETE', `${container}?force=1`);
  return removed.status === 204 || removed.status === 404;
}

interface WaitResult {
  StatusCode?: number;
  Error?: { Message?: string } | null;
}

/** The container's exit as `wait` reports it; anything else is the daemon's message. */
function waitResult(response: DockerResponse): WaitResult {
  if (response.status === 200)
    try {
      return JSON.parse(response.body) as WaitResult;
    } catch {
      // not JSON: reported below
    }
  return { Error: { Message: dockerMessage(response) } };
}

/** The daemon said no (no such image, a bind it cannot make, a sandbox that cannot start): nothing ran. */
function refused(response: DockerResponse): never {
  throw new AgentcellError(
    'BACKEND_UNAVAILABLE',
    `docker could not start the cell: ${dockerMessage(response)} (run agentcell doctor)`,
  );
}

/** `attach` upgrades the connection to the container's raw stdio stream. */
async function attach(socketPath: string, path: string): Promise<Socket> {
  try {
    return await dockerUpgrade(socketPath, path);
  } catch (cause) {
    throw new AgentcellError('BACKEND_UNAVAILABLE', `docker cannot attach to the cell: ${(cause as Error).message}`, {
      cause,
    });
  }
}

interface Relay {
  /** Settles when the container's output has ended. */
  done: Promise<void>;
  stop(): void;
}

/**
 * The container's stdout and stderr to ours (without a terminal the daemon frames them:
 * an 8-byte header with the stream and the length), our stdin to the container's; the
 * end of our stdin closes its stdin, as `docker run -i` does.
 */
function relayStdio(stream: Socket, tty: boolean): Relay {
  const done = new Promise<void>((resolve) => {
    stream
      .once('end', resolve)
      .once('close', resolve)
      .once('error', () => resolve());
  });
  if (tty) stream.on('data', (chunk: Buffer) => process.stdout.write(chunk));
  else {
    let pending: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 8) {
        const size = pending.readUInt32BE(4);
        if (pending.length < 8 + size) break;
        (pending[0] === 2 ? process.stderr : process.stdout).write(pending.subarray(8, 8 + size));
        pending = pending.subarray(8 + size);
      }
    });
  }
  stream.resume();
  const stdin = process.stdin;
  const raw = tty && stdin.isTTY;
  if (raw) stdin.setRawMode(true);
  stdin.pipe(stream);
  return {
    done,
    stop: () => {
      stdin.unpipe(stream);
      stdin.pause();
      if (raw) stdin.setRawMode(false);
      stream.destroy();
    },
  };
}

/** agentcell's signals go to the cell (with a terminal, Ctrl-C already does); the timeout ends it. */
function supervise(
  kill: (signal: NodeJS.Signals) => void,
  options: DockerApiRunOptions,
): { timedOut: () => boolean; stop: () => void } {
  let timedOut = false;
  let killTimer: NodeJS.Timeout | undefined;
  const handlers = FORWARDED_SIGNALS.map((signal) => {
    const handler = (): void => {
      if (!(options.tty && signal === 'SIGINT')) kill(signal);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  const timeout =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          kill('SIGTERM');
          killTimer = setTimeout(() => kill('SIGKILL'), KILL_GRACE_MS);
        }, options.timeoutMs);
  // A bound passed while the container was starting: killed now that it has.
  const stopListening = onAbort(options.stop, () => kill('SIGKILL'));
  return {
    timedOut: () => timedOut,
    stop: () => {
      stopListening();
      for (const [signal, handler] of handlers) process.off(signal, handler);
      if (timeout) clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
    },
  };
}

/** The cell's terminal follows ours, as the CLI's does. */
function followTerminalSize(
  call: (method: 'POST', path: string) => Promise<DockerResponse>,
  container: string,
): () => void {
  const resize = (): void => {
    const { rows, columns } = process.stdout;
    if (rows && columns) void call('POST', `${container}/resize?h=${rows}&w=${columns}`).catch(() => undefined);
  };
  resize();
  process.stdout.on('resize', resize);
  return () => process.stdout.off('resize', resize);
}
