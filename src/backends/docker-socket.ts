import { connect, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as z from 'zod/mini';
import { readJsonCache } from '../_internal/state-file.js';

const DEFAULT_SOCKET = '/var/run/docker.sock';
/** The part of the docker CLI's own config.json read here; any other content reads as no context. */
const DockerConfigSchema = z.object({ currentContext: z.optional(z.unknown()) });
const REQUEST_TIMEOUT_MS = 5000;

/**
 * The unix socket of the daemon the docker CLI would talk to, when that is a local
 * socket we can name without running the CLI: no `DOCKER_HOST` or a `unix://` one, and
 * no context chosen (`DOCKER_CONTEXT`, or `currentContext` in the CLI's config.json).
 * Undefined otherwise (tcp, ssh, a named context): callers then use the CLI itself, so
 * the answer always comes from the daemon the run's `docker` reaches.
 */
export function dockerSocketPath(env: Record<string, string | undefined>): string | undefined {
  const context = env['DOCKER_CONTEXT'];
  if (context !== undefined && context !== 'default') return undefined;
  const host = env['DOCKER_HOST'];
  if (host !== undefined && host !== '') return host.startsWith('unix://') ? host.slice('unix://'.length) : undefined;
  const configDir = env['DOCKER_CONFIG'] ?? join(env['HOME'] ?? homedir(), '.docker');
  const current = readJsonCache(join(configDir, 'config.json'), DockerConfigSchema)?.currentContext;
  if (current !== undefined && current !== '' && current !== 'default') return undefined;
  return DEFAULT_SOCKET;
}

export interface DockerResponse {
  status: number;
  body: string;
}

/** One GET to the Docker Engine API over its unix socket (no CLI start-up: a few ms instead of tens). */
export function dockerGet(socketPath: string, path: string): Promise<DockerResponse> {
  return dockerRequest(socketPath, 'GET', path, undefined, REQUEST_TIMEOUT_MS);
}

/**
 * One request to the Docker Engine API over its unix socket, on a connection of its own
 * (a long wait must not hold up the others). HTTP/1.0 from `net`: the daemon then sends
 * a plain body and closes, and node's `http` client, whose first request costs 10–20 ms
 * of loading and compiling on every run, is not needed. `onHeaders` fires when the daemon
 * has answered with its headers: for `wait`, that is once the wait is registered.
 */
export function dockerRequest(
  socketPath: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: string,
  timeoutMs?: number,
  onHeaders?: () => void,
): Promise<DockerResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const head = [`${method} ${path} HTTP/1.0`, 'Host: docker'];
    if (body !== undefined) head.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`);
    socket.once('connect', () => socket.write(`${head.join('\r\n')}\r\n\r\n${body ?? ''}`));
    let received: Buffer = Buffer.alloc(0);
    let answered = false;
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (!answered && received.includes(HEADERS_END)) {
        answered = true;
        onHeaders?.();
      }
    });
    socket.once('end', () => {
      const response = parseResponse(received);
      if (response) resolve(response);
      else reject(new Error(`docker API ${path}: not an HTTP answer`));
    });
    socket.once('error', reject);
    if (timeoutMs !== undefined)
      socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`docker API ${path}: no answer`)));
  });
}

/**
 * `POST path` with `Upgrade: tcp`: the daemon answers 101 and the connection becomes the
 * container's stdio stream (`attach`), returned paused. Rejects with the daemon's answer otherwise.
 */
export function dockerUpgrade(socketPath: string, path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    socket.once('connect', () =>
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n`,
      ),
    );
    let received: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf(HEADERS_END);
      if (end === -1) return;
      socket.off('data', onData).off('error', reject);
      const response = parseResponse(received);
      if (response?.status !== 101) {
        socket.destroy();
        reject(new Error(response ? dockerMessage(response) : 'not an HTTP answer'));
        return;
      }
      // Paused until the caller reads: nothing the container writes may be lost.
      socket.pause();
      const rest = received.subarray(end + HEADERS_END.length);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.on('data', onData).once('error', reject);
  });
}

const HEADERS_END = '\r\n\r\n';

function parseResponse(raw: Buffer): DockerResponse | undefined {
  const end = raw.indexOf(HEADERS_END);
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(raw.subarray(0, end === -1 ? raw.length : end).toString('latin1'));
  if (!status) return undefined;
  const body = end === -1 ? '' : raw.subarray(end + HEADERS_END.length).toString('utf8');
  return { status: Number(status[1]), body };
}

/** The daemon's message in an error response (`{"message": …}`), or the body itself. */
export function dockerMessage(response: DockerResponse): string {
  try {
    const { message } = JSON.parse(response.body) as { message?: unknown };
    if (typeof message === 'string') return message;
  } catch {
    // not JSON
  }
  return response.body.trim() || `HTTP ${response.status}`;
}
