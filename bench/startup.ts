import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inMountNamespace } from '../src/workspace/overlay/overlay-mount.js';
import { fmt, writeSmallWorkspace, timeInterleaved, type Timing } from './measure.js';

export interface Section {
  title: string;
  markdown: string;
  /** One line per target: met or missed. */
  verdicts: string[];
}

const TARGET_VS_NODE = 1.6;
/** Issue 17 target 4: `run -- true` against srt's, and agentcell's own share of it. */
const TARGET_VS_SRT = 0.3;
const TARGET_OWN_MS = 15;
/** @anthropic-ai/sandbox-runtime, the baseline; pinned so runs compare (BENCH_SRT_VERSION overrides). */
const SRT_VERSION = process.env['BENCH_SRT_VERSION'] ?? '0.0.78';

/** `agentcell run -- true` against a bare bwrap cell and node's own start-up. */
export function startupBench(cli: string, runs: number): Section {
  const root = mkdtempSync(join(tmpdir(), 'agentcell-bench-'));
  const workspace = join(root, 'repo');
  try {
    writeSmallWorkspace(workspace);
    writeFileSync(join(workspace, '.env'), 'TOKEN=bench\n');
    const layers = join(root, 'cell');
    for (const dir of ['upper', 'work', 'merged']) mkdirSync(join(layers, dir), { recursive: true });
    const env = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: join(root, 'home'),
      AGENTCELL_HOME: join(root, 'ac'),
    };
    const srt = installSrt(root, workspace, env);
    const timings = timeInterleaved(
      [
        { name: 'node -e 0', argv: [process.execPath, '-e', '0'], env },
        {
          name: 'bwrap (bare) true',
          argv: [
            'bwrap',
            '--unshare-all',
            '--unshare-user',
            '--die-with-parent',
            '--new-session',
            '--ro-bind',
            '/',
            '/',
            '--dev',
            '/dev',
            '--proc',
            '/proc',
            'true',
          ],
          env,
        },
        {
          // What agentcell's cell costs without agentcell: the same overlay mount in a user
          // namespace, then bwrap on the merged view. Node's start-up plus this is the floor.
          name: 'overlay mount + bwrap true (no node)',
          argv: inMountNamespace(
            { unshare: 'unshare' },
            [
              'cd "$1" && mount -t overlay overlay -o "lowerdir=$2,upperdir=upper,workdir=work,userxattr" merged',
              'exec bwrap --unshare-all --die-with-parent --new-session --ro-bind / / --dev /dev --proc /proc --bind "$1/merged" "$2" true',
            ].join(' && '),
            'sh',
            [layers, workspace],
          ),
          env,
        },
        { name: 'agentcell run -- true', argv: [cli, 'run', '--', 'true'], cwd: workspace, env },
        ...('argv' in srt
          ? [{ name: `srt -c true (sandbox-runtime ${SRT_VERSION})`, argv: srt.argv, cwd: workspace, env }]
          : []),
      ],
      runs,
    );
    const [node, bwrap, cellFloor, agentcell, srtTiming] = timings as [Timing, Timing, Timing, Timing, Timing?];
    const floor = node.medianMs + cellFloor.medianMs;
    // What agentcell itself adds: the whole run minus node's own start-up and the same cell without agentcell.
    const ownMs = agentcell.medianMs - floor;
    const ratioSrt = srtTiming ? agentcell.medianMs / srtTiming.medianMs : undefined;
    const phases = medianPhases(cli, workspace, env, runs);
    const ratioNode = agentcell.medianMs / node.medianMs;
    const ratioBwrap = agentcell.medianMs / bwrap.medianMs;
    const rows = timings.map((t) => `| ${t.name} | ${fmt(t.medianMs)} | ${fmt(t.p90Ms)} | ${fmt(t.minMs)} |`);
    const markdown = [
      `Workspace: 50 files and a masked \`.env\`; ${runs} runs each, interleaved, after 3 warm-up rounds.`,
      '',
      '| command | median ms | p90 ms | min ms |',
      '|---|---|---|---|',
      ...rows,
      ...('reason' in srt ? ['', `- not measured: srt -c true (sandbox-runtime ${SRT_VERSION}): ${srt.reason}`] : []),
      '',
      ...(ratioSrt === undefined
        ? []
        : [
            `- agentcell / srt -c true: **${ratioSrt.toFixed(2)}×** (target ≤ ${TARGET_VS_SRT}×; srt is Anthropic's sandbox-runtime CLI, bubblewrap plus its network proxies, installed by the bench from npm into a temp prefix, run with its default settings)`,
          ]),
      `- agentcell's own work: **${fmt(ownMs)} ms** = agentcell run − node -e 0 − (overlay mount + bwrap true) (target ≤ ${TARGET_OWN_MS} ms)`,
      `- agentcell / node -e 0: **${ratioNode.toFixed(2)}×** (target ≤ ${TARGET_VS_NODE}×)`,
      `- agentcell / bare bwrap: ${ratioBwrap.toFixed(1)}× (agentcell is a Node program; the bare sandbox costs ${fmt(bwrap.medianMs)} ms)`,
      `- floor: node -e 0 + the overlay and bwrap alone = ${fmt(floor)} ms = ${(floor / node.medianMs).toFixed(2)}× node -e 0 before agentcell does anything (policy, secret scan, lock, journal, receipt); agentcell adds ${fmt(agentcell.medianMs - floor)} ms to it`,
      '',
      'Where agentcell spends it (median of the `timings` that `run --json` reports; `startup` is node',
      'plus loading the bundle, `run` is spawning bwrap until the command has exited):',
      '',
      `| ${Object.keys(phases).join(' | ')} |`,
      `|${Object.keys(phases)
        .map(() => '---')
        .join('|')}|`,
      `| ${Object.values(phases).map(fmt).join(' | ')} |`,
    ].join('\n');
    const verdicts = [
      `${ratioNode <= TARGET_VS_NODE ? 'met' : 'MISSED'}: run -- true at ${ratioNode.toFixed(2)}× node -e 0 (target ≤ ${TARGET_VS_NODE}×)`,
      ratioSrt === undefined
        ? `not measured: run -- true against srt -c true (${'reason' in srt ? srt.reason : 'no timing'})`
        : `${ratioSrt <= TARGET_VS_SRT ? 'met' : 'MISSED'}: run -- true at ${ratioSrt.toFixed(2)}× srt -c true (target ≤ ${TARGET_VS_SRT}×)`,
      `${ownMs <= TARGET_OWN_MS ? 'met' : 'MISSED'}: agentcell's own work in run -- true ${fmt(ownMs)} ms (run − node -e 0 − overlay+bwrap; target ≤ ${TARGET_OWN_MS} ms)`,
    ];
    return { title: 'Start-up: `agentcell run -- true`', markdown, verdicts };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Installs srt (@anthropic-ai/sandbox-runtime) with npm into a prefix under `root` (not a
 * dependency of agentcell) and checks that `srt -c true` runs here; else says why not.
 */
function installSrt(root: string, cwd: string, env: NodeJS.ProcessEnv): { argv: string[] } | { reason: string } {
  const prefix = join(root, 'srt');
  const npm = spawnSync(
    'npm',
    [
      'install',
      '--prefix',
      prefix,
      '--no-audit',
      '--no-fund',
      '--no-save',
      `@anthropic-ai/sandbox-runtime@${SRT_VERSION}`,
    ],
    { encoding: 'utf8', timeout: 300_000, env: { ...process.env, npm_config_loglevel: 'error' } },
  );
  if (npm.status !== 0)
    return { reason: `npm install failed: ${(npm.stderr || String(npm.error)).trim().split('\n').pop()}` };
  const argv = [join(prefix, 'node_modules', '.bin', 'srt'), '-c', 'true'];
  const probe = spawnSync(argv[0]!, argv.slice(1), { cwd, env, encoding: 'utf8', timeout: 60_000 });
  if (probe.status !== 0)
    return {
      reason: `srt -c true failed here: ${(probe.stderr || probe.stdout || String(probe.error)).trim().split('\n').pop()}`,
    };
  return { argv };
}

/** Median of each phase over `runs` runs of `run --json -- true`. */
function medianPhases(cli: string, cwd: string, env: NodeJS.ProcessEnv, runs: number): Record<string, number> {
  const samples: Record<string, number[]> = {};
  for (let i = 0; i < runs; i++) {
    const r = spawnSync(cli, ['run', '--json', '--', 'true'], { cwd, env, encoding: 'utf8' });
    const exit = JSON.parse(r.stderr.trim().split('\n').pop() ?? '{}') as { timings?: Record<string, number> };
    for (const [phase, ms] of Object.entries(exit.timings ?? {})) (samples[phase] ??= []).push(ms);
  }
  return Object.fromEntries(
    Object.entries(samples).map(([phase, values]) => {
      const sorted = values.sort((a, b) => a - b);
      return [phase, sorted[Math.floor(sorted.length / 2)]!];
    }),
  );
}
