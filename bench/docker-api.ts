import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dockerGet } from '../src/backends/docker-socket.js';
import { BENCH_IMAGE as IMAGE, loadLine, makeBenchHost } from './bench-host.js';
import { fmt, quantile, timeInterleaved, type Subject } from './measure.js';

// node dist/bench/docker-api.js [RUNS]: why src/backends/ talks to the Docker Engine API
// itself instead of running the `docker` CLI (src/backends/README.md has the last numbers).
// agentcell's docker path is forced onto the CLI by a docker context (DOCKER_CONTEXT) that
// names the same local socket: agentcell then runs `docker image inspect` and `docker run`.
const SOCKET = '/var/run/docker.sock';
const runs = Number(process.argv[2] ?? 20);
const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'agentcell.cjs');
const host = makeBenchHost('docker');
try {
  const { root, workspace, env } = host;
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
  const load = loadLine(loadBefore);
  console.log(`${runs} runs each, interleaved, 3 warm-up rounds; ${load}; node ${process.version}`);
  console.log('| command | median ms | p90 ms | min ms |\n|---|---|---|---|');
  for (const t of timings) console.log(`| ${t.name} | ${fmt(t.medianMs)} | ${fmt(t.p90Ms)} | ${fmt(t.minMs)} |`);
  console.log(
    `| GET /images/IMAGE/json in a running node (Engine API) | ${fmt(quantile(api, 0.5))} | ${fmt(quantile(api, 0.9))} | ${fmt(api[0] ?? 0)} |`,
  );
} finally {
  host.remove();
}
