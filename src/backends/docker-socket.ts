import { request } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readJsonFile } from '../read-json-file.js';

const DEFAULT_SOCKET = '/var/run/docker.sock';
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
  const current = readJsonFile<{ currentContext?: unknown }>(join(configDir, 'config.json'))?.currentContext;
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
 * (a long wait must not hold up the others). `onHeaders` fires when the daemon has
 * answered with its headers: for `wait`, that is once the wait is registered.
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
    const headers: Record<string, string | number> = { Host: 'docker' };
    if (body !== undefined)
      Object.assign(headers, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    const req = request({ socketPath, path, method, headers, agent: false }, (res) => {
      onHeaders?.();
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    if (timeoutMs !== undefined)
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`docker API ${path}: no answer`)));
    req.on('error', reject);
    req.end(body);
  });
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
