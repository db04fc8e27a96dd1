import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { mutableCopy } from '../src/_internal/deep-readonly.js';
import type { RunControl } from '../src/backends/backend.js';
import { startRunGateway, type RunEgress } from '../src/egress/gateway/run-gateway.js';
import { agentcellPaths, prepareRun, type PreparedRun } from '../src/index.js';
import { readCanaryResults, startCanaries, withCanaries } from '../src/evidence/canaries.js';
import { CELL_CANARY_DIR, unwrapCanaryPrelude } from '../src/evidence/canary-script.js';
import { BENCH_IMAGE, engineHasImage, loadLine, makeBenchHost, type BenchHost } from './bench-host.js';
import { fmt, quantile } from './measure.js';
import type { Section } from './startup.js';

/** The budget on bwrap (issue 15: "a few ms"). */
const BWRAP_BUDGET_MS = 5;

interface Row {
  backend: string;
  network: 'none' | 'allowlist';
  without: number;
  with: number;
  /** Of `with`: writing the plan and results file, reading the results, removing the dir. */
  hostSide: number;
}

/**
 * What the enforcement canaries cost a run of `true`: the same prepared cell started by
 * its backend with the canary prelude and without it, interleaved, `runs` times each. The
 * backend call is timed (cell start, prelude, `true`, teardown) together with the
 * canaries' host side (their dir and plan before, the results after), so agentcell's
 * own bookkeeping, the same in both, does not drown the difference. The workspace has a
 * masked file and directory and the home an entry, so every probe runs (none skipped);
 * on bwrap a second row runs the network allowlist, whose gateway answers the
 * gateway-deny probe.
 */
export async function canariesBench(runs: number, backends: readonly string[]): Promise<Section> {
  const host = makeBenchHost('canaries');
  const rows: Row[] = [];
  const missing: string[] = [];
  const loadBefore = loadavg()[0] ?? 0;
  let planning = 0;
  try {
    writeProbeMaterial(host);
    for (const backend of backends) {
      if (backend !== 'bwrap' && !engineHasImage(backend === 'podman' ? 'podman' : 'docker')) {
        missing.push(`${backend}: no image ${BENCH_IMAGE}`);
        continue;
      }
      rows.push(await measure(host, backend, 'none', runs));
      if (backend === 'bwrap') {
        rows.push(await measure(host, backend, 'allowlist', runs));
        planning = timePlanning(host, runs);
      }
    }
  } finally {
    host.remove();
  }
  const shellStart = timeSpawn('/bin/bash', ['-c', ':'], runs);
  const load = loadLine(loadBefore);
  const verdicts = rows
    .filter((r) => r.backend === 'bwrap')
    .map((r) => {
      const cost = r.with - r.without;
      return `${cost <= BWRAP_BUDGET_MS ? 'met' : 'MISSED'}: enforcement canaries cost ${fmt(cost)} ms on bwrap, network ${r.network} (budget ≤ ${BWRAP_BUDGET_MS} ms; ${load})`;
    });
  const markdown = [
    `\`run -- true\` (readonly workspace): the backend's run of the same prepared cell with the canary prelude and`,
    `without, interleaved, ${runs} runs each after 2 warm-up rounds; medians. "with" includes the canaries' host side`,
    `(plan and results file written before, results read and dir removed after); every probe runs. ${load}.`,
    '',
    '| backend | network | without ms | with canaries ms | cost ms | of which host side ms |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.backend} | ${r.network} | ${fmt(r.without)} | ${fmt(r.with)} | ${fmt(r.with - r.without)} | ${fmt(r.hostSide)} |`,
    ),
    '',
    `Planning the probes (at prepare, off the cell's start: stat the masks, list the home) takes ${fmt(planning)} ms.`,
    `Under bash every probe runs in the prelude's own process (no fork, no exec; connects in a network namespace with`,
    `only loopback fail at once), so the cost is about one bash start: \`bash -c :\` takes ${fmt(shellStart)} ms here.`,
    ...(missing.length > 0 ? ['', ...missing.map((m) => `- not measured: ${m}`)] : []),
  ].join('\n');
  return { title: 'Enforcement canaries: their cost on `run -- true`', markdown, verdicts };
}

/** A masked file and directory with content, and a home entry: the probes that look for them run. */
function writeProbeMaterial(host: BenchHost): void {
  writeFileSync(join(host.workspace, '.env'), 'TOKEN=bench\n');
  mkdirSync(join(host.workspace, '.ssh'));
  writeFileSync(join(host.workspace, '.ssh', 'id_rsa'), 'bench\n');
  mkdirSync(host.env.HOME, { recursive: true });
  writeFileSync(join(host.env.HOME, '.bashrc'), '# bench\n');
}

async function measure(host: BenchHost, backend: string, network: Row['network'], runs: number): Promise<Row> {
  const prepared = await prepareRun({
    argv: ['true'],
    tty: false,
    paths: agentcellPaths(host.env),
    hostEnv: host.env,
    cwd: host.workspace,
    backend,
    workspaceMode: 'readonly',
    network,
    ...(network === 'allowlist' ? { allow: ['example.org'] } : {}),
    ...(backend === 'bwrap' ? {} : { image: BENCH_IMAGE }),
  });
  // Without: no prelude and no canary dir bound in (both are the canaries' cost).
  const bareSpec = {
    ...prepared.spec,
    argv: unwrapCanaryPrelude(prepared.spec.argv),
    mounts: prepared.spec.mounts.filter((m) => m.target !== CELL_CANARY_DIR),
  };
  const bare = { spec: bareSpec, plan: prepared.backend.plan(bareSpec) };
  const gateway =
    prepared.egress && prepared.spec.egress
      ? await startRunGateway(mutableCopy<RunEgress>(prepared.egress), prepared.spec.egress.socketPath, {
          cell: prepared.cell,
          run: 'bench',
        })
      : undefined;
  const samples = { with: [] as number[], without: [] as number[], hostSide: [] as number[] };
  try {
    for (let round = 0; round < runs + 2; round++) {
      const control = gateway ? { adoptListener: gateway.adoptListener } : {};
      const a = await timeWith(prepared, control);
      const b = await timeRun(prepared, bare.spec, bare.plan, control);
      if (round < 2) continue;
      samples.with.push(a.total);
      samples.hostSide.push(a.hostSide);
      samples.without.push(b);
    }
  } finally {
    await gateway?.stop();
  }
  return {
    backend,
    network,
    without: median(samples.without),
    with: median(samples.with),
    hostSide: median(samples.hostSide),
  };
}

async function timeWith(prepared: PreparedRun, control: RunControl): Promise<{ total: number; hostSide: number }> {
  const started = process.hrtime.bigint();
  startCanaries(prepared.canaries);
  const launched = process.hrtime.bigint();
  const outcome = await prepared.backend.run(prepared.spec, prepared.plan, control);
  const ended = process.hrtime.bigint();
  const report = readCanaryResults(prepared.canaries);
  const done = process.hrtime.bigint();
  if (!report || report.probes.some((p) => p.result !== 'blocked' && p.result !== 'skipped'))
    throw new Error(`the canaries did not hold on ${prepared.backend.name}: ${JSON.stringify(report)}`);
  if (outcome.exitCode !== 0) throw new Error(`run -- true exited ${outcome.exitCode} on ${prepared.backend.name}`);
  return { total: ms(done - started), hostSide: ms(launched - started + (done - ended)) };
}

async function timeRun(
  prepared: PreparedRun,
  spec: PreparedRun['spec'],
  plan: PreparedRun['plan'],
  control: RunControl,
): Promise<number> {
  const started = process.hrtime.bigint();
  const outcome = await prepared.backend.run(spec, plan, control);
  const took = ms(process.hrtime.bigint() - started);
  if (outcome.exitCode !== 0) throw new Error(`run -- true exited ${outcome.exitCode} on ${prepared.backend.name}`);
  return took;
}

/** `withCanaries` alone, as prepare calls it for this workspace (median of `runs`). */
function timePlanning(host: BenchHost, runs: number): number {
  const spec = {
    cell: 'bench',
    rootfs: { kind: 'host' as const },
    workspace: { path: host.workspace, mode: 'readonly' as const },
    masks: [
      { target: join(host.workspace, '.env'), kind: 'file' as const },
      { target: join(host.workspace, '.ssh'), kind: 'dir' as const },
    ],
    readonlyPaths: [],
    mounts: [],
    home: host.env.HOME,
    cwd: host.workspace,
    argv: ['true'],
    env: {},
    identity: { uid: 1000, gid: 1000 },
    network: 'none' as const,
    limits: {},
    seccomp: true,
    tty: false,
  };
  const input = {
    cellDir: join(host.root, 'cell'),
    mode: 'strict' as const,
    hostPaths: [host.env.AGENTCELL_HOME],
    hostHome: host.env.HOME,
    rootWritable: false,
    learn: false,
    image: false,
  };
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    withCanaries(spec, input);
    samples.push(ms(process.hrtime.bigint() - started));
  }
  return median(samples);
}

function timeSpawn(file: string, args: string[], runs: number): number {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    spawnSync(file, args, { stdio: 'ignore' });
    samples.push(ms(process.hrtime.bigint() - started));
  }
  return median(samples);
}

function median(samples: number[]): number {
  return quantile(
    [...samples].sort((a, b) => a - b),
    0.5,
  );
}

function ms(ns: bigint): number {
  return Number(ns) / 1e6;
}
