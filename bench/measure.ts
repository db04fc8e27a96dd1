import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Subject {
  name: string;
  argv: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Timing {
  name: string;
  runs: number;
  medianMs: number;
  p90Ms: number;
  minMs: number;
}

/**
 * Times each subject `runs` times, interleaved (A B C A B C …) so that a noisy
 * neighbour slows every subject alike instead of whichever happened to run then.
 */
export function timeInterleaved(subjects: readonly Subject[], runs: number, warmup = 3): Timing[] {
  const samples = subjects.map(() => [] as number[]);
  for (let round = 0; round < warmup + runs; round++) {
    subjects.forEach((subject, i) => {
      const [file, ...args] = subject.argv;
      const started = process.hrtime.bigint();
      const result = spawnSync(file!, args, { cwd: subject.cwd, env: subject.env, stdio: 'ignore' });
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (result.status !== 0) throw new Error(`${subject.name} exited ${String(result.status)}`);
      if (round >= warmup) samples[i]!.push(ms);
    });
  }
  return subjects.map((subject, i) => {
    const sorted = [...samples[i]!].sort((a, b) => a - b);
    return {
      name: subject.name,
      runs,
      medianMs: quantile(sorted, 0.5),
      p90Ms: quantile(sorted, 0.9),
      minMs: sorted[0]!,
    };
  });
}

export function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function fmt(ms: number): string {
  return ms.toFixed(1);
}

/** The small workspace the start-up benches run in: 50 source files in 5 directories. */
export function writeSmallWorkspace(workspace: string): void {
  for (let i = 0; i < 50; i++) {
    mkdirSync(join(workspace, `dir${i % 5}`), { recursive: true });
    writeFileSync(join(workspace, `dir${i % 5}`, `file${i}.ts`), `export const x${i} = ${i};\n`);
  }
}
