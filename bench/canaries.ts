import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { agentcellPaths, prepareRun, type PreparedRun } from '../src/index.js';
import { readCanaryResults, startCanaries } from '../src/evidence/canaries.js';
import { CELL_CANARY_DIR, unwrapCanaryPrelude } from '../src/evidence/canary-script.js';
import { fmt, quantile, writeSmallWorkspace } from './measure.js';
import type { Section } from './startup.js';

const IMAGE = process.env['BENCH_IMAGE'] ?? 'localhost/agentcell/cell:test';
/** The budget on bwrap (issue 15: "a few ms"). */
const BWRAP_BUDGET_MS = 5;

/**
 * What the enforcement canaries cost a run of `true`: the same prepared cell started by
 * its backend with the canary prelude and without it, interleaved, `runs` times each. The
 * backend call alone is timed (cell start, prelude, `true`, teardown), so agentcell's own
 * bookkeeping, the same in both, does not drown the difference.
 */
export async function canariesBench(runs: number, backends: readonly string[]): Promise<Section> {
  const root = mkdtempSync(join(tmpdir(), 'agentcell-bench-canaries-'));
  const rows: string[] = [];
  const verdicts: string[] = [];
  const missing: string[] = [];
  try {
    const workspace = join(root, 'repo');
    writeSmallWorkspace(workspace);
    const env = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: join(root, 'home'),
      AGENTCELL_HOME: join(root, 'ac'),
    };
    for (const backend of backends) {
      if (backend !== 'bwrap' && !hasImage(backend === 'podman' ? 'podman' : 'docker')) {
        missing.push(`${backend}: no image ${IMAGE}`);
        continue;
      }
      const paths = agentcellPaths(env);
      const prepared = await prepareRun({
        argv: ['true'],
        tty: false,
        paths,
        hostEnv: env,
        cwd: workspace,
        backend,
        workspaceMode: 'readonly',
        ...(backend === 'bwrap' ? {} : { image: IMAGE }),
      });
      // Without: no prelude and no canary dir bound in (both are the canaries' cost).
      const bare = {
        ...prepared.spec,
        argv: unwrapCanaryPrelude(prepared.spec.argv),
        mounts: prepared.spec.mounts.filter((m) => m.target !== CELL_CANARY_DIR),
      };
      const bareRun = { spec: bare, plan: prepared.backend.plan(bare) };
      const samples = { with: [] as number[], without: [] as number[] };
      for (let round = 0; round < runs + 2; round++) {
        const a = await timeRun(prepared, prepared.spec, prepared.plan, true);
        const b = await timeRun(prepared, bareRun.spec, bareRun.plan, false);
        if (round < 2) continue;
        samples.with.push(a);
        samples.without.push(b);
      }
      const med = (xs: number[]): number =>
        quantile(
          [...xs].sort((x, y) => x - y),
          0.5,
        );
      const cost = med(samples.with) - med(samples.without);
      rows.push(`| ${backend} | ${fmt(med(samples.without))} | ${fmt(med(samples.with))} | ${fmt(cost)} |`);
      if (backend === 'bwrap')
        verdicts.push(
          `${cost <= BWRAP_BUDGET_MS ? 'met' : 'MISSED'}: enforcement canaries cost ${fmt(cost)} ms on bwrap (budget ≤ ${BWRAP_BUDGET_MS} ms)`,
        );
    }
  } finally {
    removeTrees([root]);
  }
  const shellStart = timeSpawn('/bin/sh', ['-c', ':'], runs);
  const markdown = [
    `\`run -- true\` (readonly workspace, network none): the backend's run of the same prepared cell with the canary`,
    `prelude and without, interleaved, ${runs} runs each after 2 warm-up rounds; medians.`,
    '',
    '| backend | without ms | with canaries ms | cost ms |',
    '|---|---|---|---|',
    ...rows,
    '',
    `For scale: one \`sh -c :\` on this host takes ${fmt(shellStart)} ms (the prelude is one shell, one bash for the`,
    'network probes and a few forks; its cost follows the cost of a process start on the machine).',
    ...(missing.length > 0 ? ['', ...missing.map((m) => `- not measured: ${m}`)] : []),
  ].join('\n');
  return { title: 'Enforcement canaries: their cost on `run -- true`', markdown, verdicts };
}

async function timeRun(
  prepared: PreparedRun,
  spec: PreparedRun['spec'],
  plan: PreparedRun['plan'],
  canaries: boolean,
): Promise<number> {
  if (canaries) startCanaries(prepared.canaries);
  const started = process.hrtime.bigint();
  const outcome = await prepared.backend.run(spec, plan);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (canaries) {
    const report = readCanaryResults(prepared.canaries);
    if (!report || report.probes.some((p) => p.result === 'through'))
      throw new Error(`the canaries did not hold on ${prepared.backend.name}: ${JSON.stringify(report)}`);
  }
  if (outcome.exitCode !== 0) throw new Error(`run -- true exited ${outcome.exitCode} on ${prepared.backend.name}`);
  return ms;
}

function timeSpawn(file: string, args: string[], runs: number): number {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    spawnSync(file, args, { stdio: 'ignore' });
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return quantile(
    samples.sort((a, b) => a - b),
    0.5,
  );
}

function hasImage(engine: string): boolean {
  return spawnSync(engine, ['image', 'inspect', IMAGE], { stdio: 'ignore', timeout: 10_000 }).status === 0;
}
