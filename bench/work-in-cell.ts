import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSeccompFilter } from '../src/backends/seccomp-filter.js';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { makeCerts } from '../test/make-certs.js';
import { listen } from '../test/helpers.js';
import { envNumber, runAsync, stats, tail, type Stats } from './async-run.js';
import { fmt } from './measure.js';
import type { Section } from './startup.js';

/**
 * Target 2 of issue 17: the same work on the host and inside a cell. Every row times
 * the work itself, from inside where it runs: a shell takes `date +%s%N` just before
 * and just after the command, on the host and in the cell alike, so agentcell's own
 * start-up and its post-run work (secret scan, receipt; targets 3–4) are not in the
 * ratio. The wall time of the whole `agentcell run` is shown next to it, so that cost
 * stays visible.
 *
 * Variants, interleaved per round:
 * - host: the command in the workspace on the host;
 * - cell: `agentcell run --network allowlist` (bwrap, overlay workspace, the egress
 *   gateway running, agentcell's seccomp filter): the target's subject;
 * - cell, direct: the same with `--workspace-mode direct --mode development` (no
 *   overlay; strict mode refuses direct): cell ÷ this is overlayfs's share;
 * - bwrap ± seccomp: a bare bwrap (no agentcell, no overlay) with agentcell's own
 *   seccomp program (buildSeccompFilter, passed as bwrap does) and without it: the
 *   ratio of the two is seccomp's share. agentcell has no switch to turn its filter
 *   off outside breakglass (which also changes the network), so the share is taken
 *   here, on the same filter, rather than by adding one.
 *
 * Between runs each variant's workspace is put back where the work changes it (the
 * cell: `agentcell restore`; the host: the extracted files removed), not timed.
 */

const TARGETS = { git: 1.1, tsc: 1.05, npm: 1.1, untar: 1.3 } as const;
const DOWNLOAD_TARGET = 0.9;
const MIB = 1024 * 1024;

type Variant = 'host' | 'cell' | 'cell-direct' | 'bwrap+seccomp' | 'bwrap';
const VARIANTS: Variant[] = ['host', 'cell', 'cell-direct', 'bwrap+seccomp', 'bwrap'];

interface Work {
  key: string;
  title: string;
  workspace: string;
  /** The command, as argv, run with the workspace as cwd. */
  argv: string[];
  /** The host variants' argv where it differs (the download's CA and name). */
  hostArgv?: string[];
  target?: number;
  /** Put the workspace back after a run that is not a cell's (the cell restores). */
  resetHost?: () => void;
  /** Whether the cell's changes are dropped after each run (not for git status: its index refresh is kept, as a user's would be). */
  restoreCell: boolean;
  runs: number;
  allow?: string;
}

const root0 = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function workInCellBench(cli: string): Promise<Section> {
  const runs = envNumber('BENCH_WORK_RUNS', 3);
  const heavyRuns = envNumber('BENCH_WORK_HEAVY_RUNS', 2);
  const gitFiles = envNumber('BENCH_GIT_FILES', 100_000);
  const untarFiles = envNumber('BENCH_UNTAR_FILES', 6_000);
  const downloadMiB = envNumber('BENCH_DOWNLOAD_MIB', 512);
  const only = process.env['BENCH_WORK']?.split(',');
  // /var/tmp, not a tmpfs /tmp: the work runs on the disk a repo lives on.
  const root = mkdtempSync('/var/tmp/agentcell-bench-work-');
  const env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: join(root, 'home'),
    AGENTCELL_HOME: join(root, 'agentcell'),
    LANG: 'C.UTF-8',
  };
  mkdirSync(env.HOME, { recursive: true });
  const certs = await makeCerts(root, 'bench download', ['bench.example', 'localhost']);
  const blob = Buffer.alloc(MIB, 'agentcell bench ');
  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(downloadMiB * MIB) });
    let sent = 0;
    const pump = (): void => {
      while (sent < downloadMiB) {
        sent++;
        if (!res.write(blob)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  };
  const https = createHttpsServer({ key: certs.key, cert: certs.cert }, serve);
  const http = createHttpServer(serve);
  const httpsPort = await listen(https);
  const httpPort = await listen(http);
  const rows: string[] = [];
  const verdicts: string[] = [];
  const shares: string[] = [];
  try {
    const works: Work[] = [];
    const want = (k: string): boolean => only === undefined || only.includes(k);
    if (want('git')) works.push(gitWork(root, gitFiles, runs));
    if (want('tsc')) works.push(tscWork(root, heavyRuns));
    if (want('npm')) works.push(await npmWork(root, heavyRuns, env));
    if (want('untar')) works.push(untarWork(root, untarFiles, runs));
    if (want('node')) works.push(nodeStartsWork(root, runs));
    if (want('download')) {
      const ws = join(root, 'download');
      mkdirSync(ws);
      cpSync(certs.ca, join(ws, 'ca.crt'));
      writeFileSync(
        join(ws, 'agentcell.toml'),
        [
          '[network]',
          'resolve = { "bench.example" = "127.0.0.1" }',
          `upstream_ca = [${JSON.stringify(certs.ca)}]`,
          '',
        ].join('\n'),
      );
      for (const [scheme, port] of [
        ['https', httpsPort],
        ['http', httpPort],
      ] as const) {
        // The gateway tunnels TLS it does not inspect: curl in the cell checks the server's own certificate.
        const curl = ['curl', '-sS', '--fail', '-o', '/dev/null', '--cacert', 'ca.crt'];
        works.push({
          key: `download-${scheme}`,
          title: `${downloadMiB} MiB download over ${scheme.toUpperCase()} (curl; the cell's goes through the gateway)`,
          workspace: ws,
          // In the cell curl reaches the name through the cell's proxy variables (the gateway's resolve).
          argv: [...curl, `${scheme}://bench.example:${port}/blob`],
          hostArgv: [...curl, `${scheme}://localhost:${port}/blob`],
          restoreCell: false,
          runs,
          allow: `bench.example:${port}`,
        });
      }
    }
    for (const work of works) {
      process.stderr.write(`bench work: ${work.key} (${work.runs} runs × ${VARIANTS.length} variants)\n`);
      const result = await measure(cli, env, work);
      const h = result.host;
      const c = result.cell;
      if (result.failure !== undefined) {
        rows.push(`| ${work.title} | could not run: ${result.failure} | | | | | |`);
        verdicts.push(`MISSED: work in the cell, ${work.key}: not measured (${result.failure.slice(0, 120)})`);
        continue;
      }
      const isDownload = work.key.startsWith('download');
      // Downloads compare throughput (host time ÷ cell time); the rest compare time (cell ÷ host).
      const ratio = isDownload ? h.median / c.median : c.median / h.median;
      const mibps = (s: Stats): string =>
        isDownload ? ` (${(downloadMiB / (s.median / 1000)).toFixed(0)} MiB/s)` : '';
      const d = result['cell-direct'];
      const bs = result['bwrap+seccomp'];
      const b = result['bwrap'];
      rows.push(
        `| ${work.title} | ${fmt(h.median)}${mibps(h)} | ${fmt(c.median)}${mibps(c)} | **${ratio.toFixed(2)}×** | ${fmt(d.median)} | ${fmt(bs.median)} / ${fmt(b.median)} | ${fmt(result.cellWall.median)} |`,
      );
      shares.push(
        `| ${work.key} | ${(c.median / d.median).toFixed(2)}× (${fmt(c.median - d.median)} ms) | ${(bs.median / b.median).toFixed(2)}× (${fmt(bs.median - b.median)} ms) | ${(d.median / h.median).toFixed(2)}× |`,
      );
      if (isDownload) {
        if (work.key === 'download-https' || work.key === 'download-http')
          verdicts.push(
            `${ratio >= DOWNLOAD_TARGET ? 'met' : 'MISSED'}: work in the cell, ${work.title}: ${ratio.toFixed(2)}× the direct throughput (target ≥ ${DOWNLOAD_TARGET}×)`,
          );
      } else if (work.target !== undefined) {
        const target = work.target;
        verdicts.push(
          `${ratio <= target ? 'met' : 'MISSED'}: work in the cell, ${work.title}: ${ratio.toFixed(2)}× the host (target ≤ ${target}×; overlay ${(c.median / d.median).toFixed(2)}×, seccomp ${(bs.median / b.median).toFixed(2)}×)`,
        );
      }
    }
  } finally {
    https.close();
    http.close();
    https.closeAllConnections();
    http.closeAllConnections();
    removeTrees([root]);
  }
  const markdown = [
    'Each row times the work from inside where it runs (`date +%s%N` before and after, in a shell on the',
    "host or in the cell), so agentcell's start-up and post-run work are not in the ratio; the last column",
    'is the wall time of the whole `agentcell run` for the same work. **cell** = `agentcell run --network',
    'allowlist` (bwrap, overlay workspace, egress gateway on, seccomp filter); **direct** = the same with',
    '`--workspace-mode direct --mode development` (strict refuses direct); **bwrap ± seccomp** = a bare bwrap on the workspace with and without',
    "agentcell's seccomp program. Medians, interleaved rounds after a warm-up round, workspaces reset between",
    'runs (not timed). Downloads: ratio = host time ÷ cell time (throughput); the rest: cell ÷ host.',
    '',
    '| work | host ms | cell ms | ratio | cell, direct ms | bwrap+seccomp / bwrap ms | whole `agentcell run` ms |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    "Shares: overlayfs = cell ÷ cell direct; seccomp = bwrap with agentcell's filter ÷ without; the rest of the",
    'cell (namespaces, the gateway, the bridge) = cell direct ÷ host.',
    '',
    '| work | overlayfs | seccomp | cell without overlay vs host |',
    '|---|---|---|---|',
    ...shares,
  ].join('\n');
  return { title: 'Work inside the cell against the same work on the host', markdown, verdicts };
}

const MARK = 'BENCH-WORK';
/** Times "$@" from inside: nanoseconds and its status on one line; its stderr's tail if it failed. */
const TIMER = `a=$(date +%s%N); "$@" >/dev/null 2>/tmp/.bench-work-err </dev/null; s=$?; b=$(date +%s%N); echo "${MARK} $((b-a)) $s"; [ $s = 0 ] || tail -3 /tmp/.bench-work-err`;

type Result = Record<Variant, Stats> & { cellWall: Stats; failure?: string };

async function measure(cli: string, env: NodeJS.ProcessEnv, work: Work): Promise<Result> {
  const samples = Object.fromEntries(VARIANTS.map((v) => [v, [] as number[]])) as Record<Variant, number[]>;
  const wall: number[] = [];
  const seccomp = buildSeccompFilter();
  const timed = (argv: string[]): string[] => ['sh', '-c', TIMER, 'bench-work', ...argv];
  const cellArgs = (direct: boolean): string[] => [
    cli,
    'run',
    '--network',
    'allowlist',
    ...(work.allow ? ['--allow', work.allow] : []),
    // strict mode refuses a direct workspace: the direct variant is development mode's.
    ...(direct ? ['--workspace-mode', 'direct', '--mode', 'development'] : []),
    '--',
    ...timed(work.argv),
  ];
  const bwrapArgs = (withSeccomp: boolean): string[] => [
    'bwrap',
    ...['--unshare-all', '--share-net', '--die-with-parent', '--new-session'],
    ...['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--tmpfs', '/tmp'],
    ...['--bind', work.workspace, work.workspace, '--chdir', work.workspace],
    ...(withSeccomp ? ['--seccomp', '3'] : []),
    ...timed(work.hostArgv ?? work.argv),
  ];
  for (let round = 0; round < 1 + work.runs; round++) {
    for (const variant of VARIANTS) {
      let r;
      if (variant === 'host') r = await runAsync(timed(work.hostArgv ?? work.argv), { cwd: work.workspace, env });
      else if (variant === 'cell' || variant === 'cell-direct')
        r = await runAsync(cellArgs(variant === 'cell-direct'), { cwd: work.workspace, env });
      else
        r = await runAsync(bwrapArgs(variant === 'bwrap+seccomp'), {
          cwd: work.workspace,
          env,
          fd3: seccomp?.program ?? Buffer.alloc(0),
        });
      const line = new RegExp(`^${MARK} (\\d+) (\\d+)$`, 'm').exec(r.stdout);
      if (variant === 'cell' && work.restoreCell) await runAsync([cli, 'restore'], { cwd: work.workspace, env });
      else if (variant !== 'cell') work.resetHost?.();
      if (r.status !== 0 || !line || line[2] !== '0')
        return {
          ...(Object.fromEntries(VARIANTS.map((v) => [v, stats([])])) as Record<Variant, Stats>),
          cellWall: stats([]),
          failure: `${variant}: exit ${String(r.status)}/${line?.[2] ?? '?'}: ${tail(r.stdout + '\n' + r.stderr)}`,
        };
      if (round === 0) continue;
      samples[variant].push(Number(line[1]) / 1e6);
      if (variant === 'cell') wall.push(r.ms);
    }
  }
  return {
    ...(Object.fromEntries(VARIANTS.map((v) => [v, stats(samples[v])])) as Record<Variant, Stats>),
    cellWall: stats(wall),
  };
}

function sh(script: string, cwd: string): void {
  const r = spawnSync('sh', ['-c', script], { cwd, encoding: 'utf8', maxBuffer: 64 * MIB });
  if (r.status !== 0) throw new Error(`bench setup failed: ${script}: ${r.stderr}`);
}

/** A committed git repo of `files` small files in directories of 100; `git status` in it. */
function gitWork(root: string, files: number, runs: number): Work {
  const ws = join(root, 'git-repo');
  for (let i = 0; i < files; i++) {
    const dir = join(ws, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `f${i}.txt`), `line ${i}\n`);
  }
  // gc.auto=0: committing 100,000 loose objects would start a detached `git gc --auto` that packs them
  // while the rounds run (and races the clean-up).
  sh(
    'git init -q && git config gc.auto 0 && git -c user.name=bench -c user.email=bench@example.com add -A && git -c user.name=bench -c user.email=bench@example.com commit -qm files',
    ws,
  );
  return {
    key: 'git',
    title: `\`git status\` in a ${files.toLocaleString('en')}-file repo`,
    workspace: ws,
    argv: ['git', 'status'],
    target: TARGETS.git,
    restoreCell: false,
    runs,
  };
}

/** This project's sources and its node_modules (copied: the cell sees only the workspace); `tsc -p`. */
function tscWork(root: string, runs: number): Work {
  const ws = join(root, 'tsc-project');
  for (const part of ['src', 'test', 'bench', 'tsconfig.json', 'package.json'])
    cpSync(join(root0, part), join(ws, part), { recursive: true });
  cpSync(join(root0, 'node_modules'), join(ws, 'node_modules'), { recursive: true, dereference: true });
  return {
    key: 'tsc',
    title: '`tsc -p tsconfig.json` of this project (emits to dist/)',
    workspace: ws,
    argv: [process.execPath, 'node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'],
    target: TARGETS.tsc,
    restoreCell: true,
    runs,
  };
}

/** This project's package.json and lock with a warm npm cache in the workspace; `npm ci --offline`. */
async function npmWork(root: string, runs: number, env: NodeJS.ProcessEnv): Promise<Work> {
  const ws = join(root, 'npm-project');
  mkdirSync(ws);
  for (const file of ['package.json', 'package-lock.json']) cpSync(join(root0, file), join(ws, file));
  const argv = ['npm', 'ci', '--offline', '--cache', '.npm-cache', '--no-audit', '--no-fund', '--ignore-scripts'];
  // Warm the cache: from the host's npm cache, then (if that misses a package) once from the registry.
  cpSync(join(homedir(), '.npm', '_cacache'), join(ws, '.npm-cache', '_cacache'), { recursive: true });
  const offline = await runAsync(argv, { cwd: ws, env });
  if (offline.status !== 0) {
    const online = await runAsync(
      ['npm', 'ci', '--cache', '.npm-cache', '--no-audit', '--no-fund', '--ignore-scripts'],
      {
        cwd: ws,
        env,
      },
    );
    if (online.status !== 0) throw new Error(`warming the npm cache failed: ${tail(online.stderr)}`);
  }
  return {
    key: 'npm',
    title: "`npm ci --offline` of this project's lock from a warm cache",
    workspace: ws,
    argv,
    target: TARGETS.npm,
    restoreCell: true,
    runs,
  };
}

/** A gzipped tar of `files` small source-like files; extracting it into the workspace. */
function untarWork(root: string, files: number, runs: number): Work {
  const ws = join(root, 'untar');
  const src = join(root, 'untar-src');
  for (let i = 0; i < files; i++) {
    const dir = join(src, `pkg${i % 60}`, `sub${i % 7}`);
    if (i < 420) mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `file${i}.js`), `export const v${i} = ${JSON.stringify('x'.repeat(i % 900))};\n`);
  }
  mkdirSync(ws);
  sh(`tar -czf ${JSON.stringify(join(ws, 'files.tar.gz'))} -C ${JSON.stringify(src)} .`, root);
  rmSync(src, { recursive: true, force: true });
  return {
    key: 'untar',
    title: `unpacking ${files.toLocaleString('en')} small files (\`tar -xzf\`) into the workspace`,
    workspace: ws,
    argv: ['sh', '-c', 'mkdir out && tar -xzf files.tar.gz -C out'],
    target: TARGETS.untar,
    resetHost: () => rmSync(join(ws, 'out'), { recursive: true, force: true }),
    restoreCell: true,
    runs,
  };
}

/**
 * Node start-ups, as an agent's tool calls make them (each `tsc`, linter, test worker, npm
 * script), in a cell that inspects TLS as every agent's cell does (the provider key is injected
 * by the gateway): how node is told to trust the cell CA decides what each start costs there.
 * No target of its own; the host row is the baseline.
 */
function nodeStartsWork(root: string, runs: number): Work {
  const ws = join(root, 'node-starts');
  mkdirSync(ws);
  writeFileSync(
    join(ws, 'agentcell.toml'),
    ['[network]', 'inspect = ["bench.example"]', 'resolve = { "bench.example" = "127.0.0.1" }', ''].join('\n'),
  );
  const node = JSON.stringify(process.execPath);
  return {
    key: 'node',
    title: '20 × `node -e 0` (a cell that inspects TLS, as an agent’s does)',
    workspace: ws,
    argv: ['sh', '-c', `for i in $(seq 20); do ${node} -e 0 || exit 1; done`],
    restoreCell: false,
    runs,
    allow: 'bench.example:443',
  };
}
