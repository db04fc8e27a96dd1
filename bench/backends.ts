import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmt, writeSmallWorkspace, timeInterleaved, type Subject, type Timing } from './measure.js';
import type { Section } from './startup.js';

const TARGET = 1.15;
/** The image the OCI rows run; scripts/test-images.sh imports it. */
const IMAGE = process.env['BENCH_IMAGE'] ?? 'localhost/agentcell/cell:test';

/**
 * `agentcell run --backend X -- true` against the bare engine running the same image
 * with no network, as the cell has none (`podman run`, `docker run`, `docker run
 * --runtime runsc`), plus `runsc do true` for
 * scale, interleaved in one run. Backends whose engine or image is missing are listed
 * as not measured, with the reason.
 */
export function backendsBench(cli: string, runs: number): Section {
  const root = mkdtempSync(join(tmpdir(), 'agentcell-bench-'));
  const workspace = join(root, 'repo');
  try {
    writeSmallWorkspace(workspace);
    const env = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: join(root, 'home'),
      AGENTCELL_HOME: join(root, 'ac'),
    };
    const missing: string[] = [];
    const pairs: [Subject, Subject][] = [];
    const agentcell = (backend: string): Subject => ({
      name: `agentcell run --backend ${backend} -- true`,
      argv: [cli, 'run', '--backend', backend, '--image', IMAGE, '--', 'true'],
      cwd: workspace,
      env,
    });
    const has = (engine: string): boolean =>
      spawnSync(engine, ['image', 'inspect', IMAGE], { stdio: 'ignore', timeout: 10_000 }).status === 0;
    if (has('podman'))
      pairs.push([
        // podman here needs explicit ulimits (see oci-backend.ts); the bare row gets the same.
        {
          name: 'podman run --rm --network none IMAGE true',
          argv: ['podman', 'run', '--rm', '--network', 'none', ...podmanUlimits(), IMAGE, 'true'],
          env,
        },
        agentcell('podman'),
      ]);
    else missing.push(`podman: no image ${IMAGE} (run scripts/test-images.sh)`);
    if (has('docker')) {
      pairs.push([
        {
          name: 'docker run --rm --network none IMAGE true',
          argv: ['docker', 'run', '--rm', '--network', 'none', IMAGE, 'true'],
          env,
        },
        agentcell('docker'),
      ]);
      pairs.push([
        {
          name: 'docker run --rm --runtime runsc --network none IMAGE true',
          argv: ['docker', 'run', '--rm', '--runtime', 'runsc', '--network', 'none', IMAGE, 'true'],
          env,
        },
        agentcell('gvisor'),
      ]);
    } else missing.push(`docker, gvisor: docker does not answer or has no image ${IMAGE}`);
    const subjects = pairs.flat();
    // What agentcell no longer pays on docker and gvisor: it sends the CLI's API requests itself.
    if (has('docker'))
      subjects.push({
        name: 'docker --version (the CLI start-up alone, for scale)',
        argv: ['docker', '--version'],
        env,
      });
    const runsc = {
      name: 'runsc do true (host rootfs, for scale)',
      argv: ['runsc', '--network=none', 'do', 'true'],
      env,
    };
    const canRunsc = spawnSync(runsc.argv[0]!, runsc.argv.slice(1), { stdio: 'ignore', timeout: 30_000 }).status === 0;
    if (canRunsc) subjects.push(runsc);
    else missing.push('runsc do: failed here (it needs root)');
    const loadBefore = loadavg()[0] ?? 0;
    const timings = subjects.length > 0 ? timeInterleaved(subjects, runs) : [];
    // Other work on the machine slows node's start-up most, so say how busy it was.
    const load = `load average ${loadBefore.toFixed(1)} before, ${(loadavg()[0] ?? 0).toFixed(1)} after, on ${cpus().length} cores`;
    const byName = new Map(timings.map((t) => [t.name, t]));
    const rows = timings.map((t) => `| ${t.name} | ${fmt(t.medianMs)} | ${fmt(t.p90Ms)} | ${fmt(t.minMs)} |`);
    const verdicts = pairs.map(([bare, cell]) => {
      const ratio = (byName.get(cell.name) as Timing).medianMs / (byName.get(bare.name) as Timing).medianMs;
      return `${ratio <= TARGET ? 'met' : 'MISSED'}: ${cell.name} at ${ratio.toFixed(2)}× \`${bare.name}\` (target ≤ ${TARGET}×)`;
    });
    const markdown = [
      `Image ${IMAGE} (Debian bookworm minbase + node); workspace: 50 files, overlay mode (mounted on the host around`,
      `each run); ${runs} runs each, interleaved, after 3 warm-up rounds. agentcell's rows include node's start-up,`,
      'policy, the secret scan, the image digest lookup (docker: its API socket; podman: its digest cache, primed by',
      'the warm-up, as on any second run of an unchanged image), the host overlay mount, the journal and the signed',
      'receipt, and the enforcement canaries (src/evidence/canaries.ts) the cell runs before the command. On docker and',
      'gvisor agentcell sends the Docker Engine API requests itself; the bare rows run the CLI.',
      `Machine: ${load}.`,
      '',
      '| command | median ms | p90 ms | min ms |',
      '|---|---|---|---|',
      ...rows,
      ...(missing.length > 0 ? ['', ...missing.map((m) => `- not measured: ${m}`)] : []),
    ].join('\n');
    return { title: 'Backends: `agentcell run --backend X -- true` against the bare engine', markdown, verdicts };
  } finally {
    removeTrees([root]);
  }
}

function podmanUlimits(): string[] {
  return ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
}
