import { spawn, type StdioOptions } from 'node:child_process';
import { quantile } from './measure.js';

/**
 * Spawning without blocking the event loop, for suites whose baseline and cell talk to
 * a server in the bench's own process (provider stubs, the download server).
 */
export interface Finished {
  status: number | null;
  stdout: string;
  stderr: string;
  /** From just before spawn to the child's exit. */
  ms: number;
}

export function runAsync(
  argv: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; fd3?: Buffer },
): Promise<Finished> {
  const [file, ...args] = argv;
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const stdio: StdioOptions =
      options.fd3 === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe', 'pipe'];
    const child = spawn(file!, args, { cwd: options.cwd, env: options.env, stdio });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    // `fd3`: written to the child's fd 3 (how bwrap takes a seccomp filter).
    if (options.fd3 !== undefined) {
      const fd3 = child.stdio[3] as NodeJS.WritableStream & { on(e: 'error', f: () => void): void };
      fd3.on('error', () => undefined);
      fd3.end(options.fd3);
    }
    child.on('error', reject);
    child.on('close', (status) =>
      resolve({
        status,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: Number(process.hrtime.bigint() - started) / 1e6,
      }),
    );
  });
}

/** Milliseconds since `since` (a process.hrtime.bigint()). */
export function msSince(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e6;
}

export interface Stats {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function stats(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  if (sorted.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  return { median: quantile(sorted, 0.5), min: sorted[0]!, max: sorted.at(-1)!, n: sorted.length };
}

/** A number from the environment, or `fallback`. */
export function envNumber(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

/** The last lines of a failed child's output, for a row that says why. */
export function tail(text: string, lines = 3): string {
  return text.trim().split('\n').slice(-lines).join(' / ').replace(/\|/g, '\\|').slice(0, 300);
}
