import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { dockerGet } from '../src/backends/docker-socket.js';
import { fmt, quantile, timeInterleaved, writeSmallWorkspace, type Subject } from './measure.js';

// node dist/bench/docker-api.js [RUNS]: why src/backends/ talks to the Docker Engine API
// itself instead of running the `docker` CLI (src/backends/README.md has the last numbers).
// agentcell's docker path is forced onto the CLI by a docker context (DOCKER_CONTEXT) that
// names the same local socket: agentcell then runs `docker image inspect` and `docker run`.
const IMAGE = process.env['BENCH_IMAGE'] ?? 'localhost/agentcell/cell:test';
const SOCKET = '/var/run/docker.sock';
const runs = Number(process.argv[2] ?? 20);
const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'agentcell.cjs');
const root = mkdtempSync(join(tmpdir(), 'agentcell-bench-docker-'));
try {
  const workspace = join(root, 'repo');
  writeSmallWorkspace(workspace);
  const env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: join(root, 'home'),
    AGENTCELL_HOME: join(root, 'ac'),
  };
  const cliEnv = { ...env, DOCKER_CONFIG: join(root, 'docker-config'), DOCKER_CONTEXT: 'same-socket' };
  const made = spawnSync('docker', ['context', 'create', 'same-socket', '--docker', `host=unix://${SOCKET}`], {
    env: cliEnv,
    encoding: 'utf8',
  });
  if (made.status !== 0) throw new Error(`docker context create: ${made.stderr}`);
  const agentcell = ['run', '--backend', 'docker', '--image', IMAGE, '--', 'true'];
  const subjects: Subject[] = [
    { name: 'docker --version (CLI start-up)', argv: ['docker', '--version'], env },
    { name: 'docker image inspect IMAGE (CLI round trip)', argv: ['docker', 'image', 'inspect', IMAGE], env },
    { name: 'agentcell run --backend docker -- true (Engine API)', argv: [cli, ...agentcell], cwd: workspace, env },
    {
      name: 'agentcell run --backend docker -- true (docker CLI)',
      argv: [cli, ...agentcell],
      cwd: workspace,
      env: cliEnv,
    },
  ];
  const loadBefore = loadavg()[0] ?? 0;
  const timings = timeInterleaved(subjects, runs);
  // The API's own cost, in a running process (agentcell's case): one GET per sample.
  const api: number[] = [];
  for (let i = 0; i < runs + 3; i++) {
    const started = process.hrtime.bigint();
    const reply = await dockerGet(SOCKET, `/images/${encodeURIComponent(IMAGE)}/json`);
    if (reply.status !== 200) throw new Error(`GET /images: ${reply.status}`);
    if (i >= 3) api.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  api.sort((a, b) => a - b);
  const load = `load average ${loadBefore.toFixed(1)} before, ${(loadavg()[0] ?? 0).toFixed(1)} after, ${cpus().length} cores`;
  console.log(`${runs} runs each, interleaved, 3 warm-up rounds; ${load}; node ${process.version}`);
  console.log('| command | median ms | p90 ms | min ms |\n|---|---|---|---|');
  for (const t of timings) console.log(`| ${t.name} | ${fmt(t.medianMs)} | ${fmt(t.p90Ms)} | ${fmt(t.minMs)} |`);
  console.log(
    `| GET /images/IMAGE/json in a running node (Engine API) | ${fmt(quantile(api, 0.5))} | ${fmt(quantile(api, 0.9))} | ${fmt(api[0] ?? 0)} |`,
  );
} finally {
  removeTrees([root]);
}
