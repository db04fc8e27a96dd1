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
      ],
      runs,
    );
    const [node, bwrap, cellFloor, agentcell] = timings as [Timing, Timing, Timing, Timing];
    const floor = node.medianMs + cellFloor.medianMs;
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
      '',
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
    const verdict = `${ratioNode <= TARGET_VS_NODE ? 'met' : 'MISSED'}: run -- true at ${ratioNode.toFixed(2)}× node -e 0 (target ≤ ${TARGET_VS_NODE}×)`;
    return { title: 'Start-up: `agentcell run -- true`', markdown, verdicts: [verdict] };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
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
