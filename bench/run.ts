import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startupBench, type Section } from './startup.js';
import { transactionsBench } from './transactions.js';
import { inspectBench } from './inspect.js';
import { egressBench } from './egress.js';
import { backendsBench } from './backends.js';
import { canariesBench } from './canaries.js';
import { agentStartBench } from './agent-start.js';
import { workInCellBench } from './work-in-cell.js';
import { sessionsBench } from './sessions.js';

// npm run bench: every suite measures agentcell and its baseline side by side in the
// same run, and docs/benchmarks.md is rewritten with the ratios.
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// BENCH_CLI times another build's CLI with this bench (a before/after comparison); the default is this one.
const cli = process.env['BENCH_CLI'] ?? join(root, 'dist', 'agentcell.cjs');
const runs = Number(process.env['BENCH_RUNS'] ?? 30);

// BENCH_ONLY=startup,transactions runs some suites; a partial run prints its sections
// and leaves docs/benchmarks.md, which holds the last full run, alone.
const only = process.env['BENCH_ONLY']?.split(',');
const loadBefore = loadavg();
const wanted = (name: string): boolean => only === undefined || only.includes(name);
const sections: Section[] = [
  ...(wanted('startup') ? [startupBench(cli, runs)] : []),
  ...(wanted('transactions') ? [await transactionsBench(cli)] : []),
  ...(wanted('inspect') ? [await inspectBench()] : []),
  ...(wanted('egress') ? [await egressBench()] : []),
  ...(wanted('backends') ? [backendsBench(cli, Number(process.env['BENCH_BACKEND_RUNS'] ?? 15))] : []),
  ...(wanted('canaries')
    ? [
        await canariesBench(
          Number(process.env['BENCH_CANARY_RUNS'] ?? 20),
          (process.env['BENCH_CANARY_BACKENDS'] ?? 'bwrap,podman,docker,gvisor').split(','),
        ),
      ]
    : []),
  ...(wanted('agents') ? [await agentStartBench(cli)] : []),
  ...(wanted('work') ? [await workInCellBench(cli)] : []),
  ...(wanted('sessions') ? [await sessionsBench(cli)] : []),
];

const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(', ');
const bwrapVersion = spawnSync('bwrap', ['--version'], { encoding: 'utf8' }).stdout.trim();
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Linux ${release()}, node ${process.version}, ${bwrapVersion}`;
const doc = [
  '# Benchmarks',
  '',
  'Written by `npm run bench`; numbers are from the last run on the machine below. Each',
  'suite runs agentcell and its baseline in the same process, interleaved, so the ratios',
  'hold even on a noisy machine; absolute times do not travel between machines.',
  '',
  `Last run: ${new Date().toISOString().slice(0, 10)} on ${machine}.`,
  `Load average (1, 5, 15 min) at the start: ${load(loadBefore)}; at the end: ${load(loadavg())}.`,
  '',
  ...sections.flatMap((s) => [`## ${s.title}`, '', s.markdown, '']),
  '## Targets',
  '',
  ...sections.flatMap((s) => s.verdicts.map((v) => `- ${v}`)),
  '',
].join('\n');
process.stdout.write(doc);
if (only === undefined) writeFileSync(join(root, 'docs', 'benchmarks.md'), doc);
else process.stdout.write('\n(BENCH_ONLY: docs/benchmarks.md left as it was)\n');
