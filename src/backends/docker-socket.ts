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
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', headers: { Host: 'docker' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`docker API ${path}: no answer`)));
    req.on('error', reject);
    req.end();
  });
}
