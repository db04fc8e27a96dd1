import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { agentAdapter } from '../src/agents/agent-registry.js';
import type { AgentAdapter } from '../src/agents/agent-adapter.js';
import { installToolchain, npmToolchain } from '../src/agents/agent-toolchain.js';
import { makeCerts } from '../test/make-certs.js';
import { anthropicStub, geminiStub, openaiResponsesStub, type StubRequest } from '../test/provider-stubs.js';
import { listen, TOOLCHAIN_CACHE } from '../test/helpers.js';
import { envNumber, msSince, runAsync, stats, tail } from './async-run.js';
import { fmt } from './measure.js';
import type { Section } from './startup.js';

/**
 * Target 1 of issue 17: how much later an agent starts and finishes in a cell than the
 * same CLI run bare. Both runs use the same install (the toolchain agentcell installs
 * from npm, AGENTCELL_TOOLCHAIN_CACHE), the same arguments agentcell passes (its
 * unattended flags, then the prompt), the same seeded config, and the same HTTPS stub
 * of the provider in this process, which plays a whole turn: a write tool call, a
 * shell tool call, a text answer. The bare run talks to the stub directly (its test CA
 * trusted through NODE_EXTRA_CA_CERTS / SSL_CERT_FILE); the cell run is `agentcell
 * <agent> …` from the shell, so it includes agentcell's start-up, the cell, the egress
 * gateway (TLS to the agent, TLS to the stub, the key injected) and the receipt.
 * Two clocks per run, both from spawning the command: the stub's first request of the
 * run (any method but HEAD), and the command's exit. Claude Code sends a `HEAD /` to a base
 * URL that is not its default before its first model request: the bare run (base URL
 * https://localhost:PORT) does, the cell run (the default host, resolved to the stub by the
 * gateway) does not, so counting it would compare two different requests. Between runs the workspace is put back
 * (bare: the files the turn wrote are removed; cell: `agentcell restore`, untimed), so
 * every run starts from the same state.
 */
const TARGET = 1.15;

interface AgentCase {
  adapter: AgentAdapter;
  model: string;
  stub: (seen: StubRequest[], plan: { file: string; content: string; envDump: string }) => Handler;
  apiHost: string;
  /** The key the gateway injects in the cell, and the bare run holds itself. */
  keys: Record<string, string>;
  /** The CLI's arguments after agentcell's unattended flags, for a base URL. */
  args: (baseUrl: string) => string[];
  /** How the CLI finds the stub: an env var (set via the policy's [env] in the cell), or nothing (args). */
  baseUrlEnv?: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const CASES: AgentCase[] = [
  {
    adapter: agentAdapter('claude'),
    model: 'claude-stub-1',
    stub: anthropicStub,
    apiHost: 'api.anthropic.com',
    keys: { ANTHROPIC_API_KEY: 'sk-ant-bench-5b1f0c9d8e7a6b5c4d3e' },
    args: () => ['-p', 'create hello.txt', '--model', 'claude-stub-1'],
    baseUrlEnv: 'ANTHROPIC_BASE_URL',
  },
  {
    adapter: agentAdapter('codex'),
    model: 'gpt-stub-1',
    stub: openaiResponsesStub,
    apiHost: 'api.openai.com',
    keys: { OPENAI_API_KEY: 'sk-proj-bench-0a1b2c3d4e5f6a7b8c9d', CODEX_API_KEY: 'sk-proj-bench-0a1b2c3d4e5f6a7b8c9d' },
    // Codex 0.169 takes its API base from config (OPENAI_BASE_URL is not read by exec).
    args: (base) => [
      ...['exec', '--skip-git-repo-check', '-m', 'gpt-stub-1'],
      ...['-c', `openai_base_url="${base}/v1"`, 'create hello.txt'],
    ],
  },
  {
    adapter: agentAdapter('gemini'),
    model: 'gemini-stub-1',
    stub: geminiStub,
    apiHost: 'generativelanguage.googleapis.com',
    keys: { GEMINI_API_KEY: 'AIza-bench-1c2d3e4f5a6b7c8d9e0f' },
    args: () => ['-p', 'create hello.txt', '-m', 'gemini-stub-1'],
    baseUrlEnv: 'GOOGLE_GEMINI_BASE_URL',
  },
];

interface Samples {
  first: number[];
  exit: number[];
}

export async function agentStartBench(cli: string): Promise<Section> {
  const runs = envNumber('BENCH_AGENT_RUNS', 5);
  const wanted = (process.env['BENCH_AGENTS'] ?? 'claude,codex,gemini').split(',');
  const root = mkdtempSync(join(tmpdir(), 'agentcell-bench-agents-'));
  let handler: Handler = () => undefined;
  let firstAt: bigint | undefined;
  const certs = await makeCerts(root, 'bench stub', [...CASES.map((c) => c.apiHost), 'localhost']);
  const server = createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    if (req.method !== 'HEAD') firstAt ??= process.hrtime.bigint();
    handler(req, res);
  });
  const port = await listen(server);
  // SSL_CERT_FILE replaces the system roots: the system bundle plus the stub's CA.
  const bundle = join(root, 'bundle.crt');
  writeFileSync(
    bundle,
    readFileSync('/etc/ssl/certs/ca-certificates.crt', 'utf8') + '\n' + readFileSync(certs.ca, 'utf8'),
  );
  const rows: string[] = [];
  const phaseRows: string[] = [];
  const verdicts: string[] = [];
  try {
    for (const c of CASES.filter((x) => wanted.includes(x.adapter.name))) {
      const name = c.adapter.name;
      const dir = join(root, name);
      const workspace = join(dir, 'repo');
      const bareHome = join(dir, 'bare-home');
      mkdirSync(workspace, { recursive: true });
      writeFileSync(join(workspace, 'README.md'), '# a repo\n');
      const cellBase = `https://${c.apiHost}:${port}`;
      const bareBase = `https://localhost:${port}`;
      writeFileSync(
        join(workspace, 'agentcell.toml'),
        [
          '[network]',
          `resolve = { ${JSON.stringify(c.apiHost)} = "127.0.0.1" }`,
          `upstream_ca = [${JSON.stringify(certs.ca)}]`,
          ...(c.baseUrlEnv ? ['[env]', `${c.baseUrlEnv} = "${cellBase}"`] : []),
          '',
        ].join('\n'),
      );
      // The bare CLI gets the config agentcell seeds in the cell (the key approved is the real one).
      for (const seed of c.adapter.seed({ workspace, placeholder: (s) => c.keys[s] ?? s })) {
        const path = join(bareHome, seed.path);
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, 'json' in seed ? JSON.stringify(seed.json, null, 2) : seed.text, { mode: 0o600 });
      }
      const plan = {
        file: join(workspace, 'hello.txt'),
        content: `written by the stub via ${name}\n`,
        envDump: join(workspace, 'cell-env.txt'),
      };
      const seen: StubRequest[] = [];
      handler = c.stub(seen, plan);
      const basePath = process.env['PATH'] ?? '/usr/bin:/bin';
      // Installed first (as agentcell installs it, untimed): the bare run goes first and needs it.
      const toolchain = npmToolchain(c.adapter, c.adapter.version, TOOLCHAIN_CACHE);
      await installToolchain(toolchain, (line) => process.stderr.write(`${line}\n`));
      const executable = join(toolchain.dir, 'node_modules', '.bin', c.adapter.bin);
      const bare = {
        argv: [executable, ...c.adapter.unattendedArgs, ...c.args(bareBase)],
        env: {
          PATH: basePath,
          HOME: bareHome,
          LANG: 'C.UTF-8',
          ...c.adapter.env,
          ...c.keys,
          ...(c.baseUrlEnv ? { [c.baseUrlEnv]: bareBase } : {}),
          NODE_EXTRA_CA_CERTS: certs.ca,
          SSL_CERT_FILE: bundle,
        },
      };
      const cellEnv = {
        PATH: basePath,
        HOME: join(dir, 'home'),
        AGENTCELL_HOME: join(dir, 'agentcell'),
        AGENTCELL_TOOLCHAIN_CACHE: TOOLCHAIN_CACHE,
        LANG: 'C.UTF-8',
        ...c.keys,
      };
      // `--` ends agentcell's options where the CLI's own start with a subcommand (codex exec).
      const cellArgv = [cli, name, ...(name === 'codex' ? ['--'] : []), ...c.args(cellBase)];
      const samples: Record<'bare' | 'cell', Samples> = {
        bare: { first: [], exit: [] },
        cell: { first: [], exit: [] },
      };
      const phases: Record<string, number>[] = [];
      let failure: string | undefined;
      // One warm-up round (the cell's first run creates it), then `runs`.
      for (let round = 0; round < 1 + runs && failure === undefined; round++) {
        for (const kind of round % 2 === 0 ? (['bare', 'cell'] as const) : (['cell', 'bare'] as const)) {
          rmSync(plan.file, { force: true });
          rmSync(plan.envDump, { force: true });
          firstAt = undefined;
          seen.length = 0;
          const started = process.hrtime.bigint();
          const r =
            kind === 'bare'
              ? await runAsync(bare.argv, { cwd: workspace, env: bare.env })
              : await runAsync(cellArgv, { cwd: workspace, env: cellEnv });
          const first = firstAt === undefined ? undefined : Number(firstAt - started) / 1e6;
          const exit = msSince(started);
          if (kind === 'cell') {
            if (round > 0) phases.push(await receiptTimings(cli, workspace, cellEnv));
            await runAsync([cli, 'restore'], { cwd: workspace, env: cellEnv });
          }
          if (r.status !== 0 || first === undefined || seen.length < 3) {
            failure = `${kind} run failed (exit ${String(r.status)}, ${seen.length} stub requests): ${tail(r.stdout + '\n' + r.stderr)}`;
            break;
          }
          if (round > 0) {
            samples[kind].first.push(first);
            samples[kind].exit.push(exit);
          }
        }
      }
      if (failure !== undefined) {
        rows.push(`| ${name} ${c.adapter.version} | could not run here: ${failure} | | | | | |`);
        verdicts.push(`MISSED: agent start, ${name}: not measured (${failure.slice(0, 120)})`);
        continue;
      }
      const b = { first: stats(samples.bare.first), exit: stats(samples.bare.exit) };
      const k = { first: stats(samples.cell.first), exit: stats(samples.cell.exit) };
      const rFirst = k.first.median / b.first.median;
      const rExit = k.exit.median / b.exit.median;
      rows.push(
        `| ${name} ${c.adapter.version} | ${fmt(b.first.median)} | ${fmt(k.first.median)} | **${rFirst.toFixed(2)}×** | ${fmt(b.exit.median)} | ${fmt(k.exit.median)} | **${rExit.toFixed(2)}×** |`,
      );
      phaseRows.push(phaseRow(name, phases));
      const ok = rFirst <= TARGET && rExit <= TARGET;
      const why = ok
        ? ''
        : ` (agentcell adds ${fmt(k.first.median - b.first.median)} ms before the first request and ${fmt(k.exit.median - b.exit.median)} ms to the whole turn)`;
      verdicts.push(
        `${ok ? 'met' : 'MISSED'}: agent start, ${name}: first request ${rFirst.toFixed(2)}×, exit ${rExit.toFixed(2)}× the bare CLI (target ≤ ${TARGET}× both)${why}`,
      );
    }
  } finally {
    server.close();
    server.closeAllConnections();
    rmSync(root, { recursive: true, force: true });
  }
  const markdown = [
    `Each agent's real CLI (installed from npm by agentcell) plays one turn against an HTTPS stub of its`,
    `provider in the bench process (a write tool call, a shell tool call, a text answer). **bare** is`,
    `the same CLI binary, same arguments (agentcell's unattended flags + the prompt), same seeded`,
    `config, run on the host against the stub directly; **cell** is \`agentcell <agent> …\` (bwrap,`,
    `overlay workspace, egress gateway with key injection and TLS both ways, receipt). Clocks start at`,
    `spawn: *first request* is when the stub sees the run's first request (not counting a \`HEAD /\` preflight,`,
    `which Claude Code sends only to a non-default base URL: the bare run's), *exit* when the command has`,
    `exited. Medians of ${runs} interleaved runs after a warm-up round; the workspace is reset between`,
    `runs (cell: \`agentcell restore\`, not timed). The cell's prompt also carries agentcell's brief (the`,
    `agent's user instructions); the bare run has none.`,
    '',
    '| agent | bare: first request ms | cell: first request ms | ratio | bare: exit ms | cell: exit ms | ratio |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    "Where the cell run spends it: medians of the phase timings in each run's receipt (`startup` is node plus",
    "loading the bundle; `agent` is readying the agent's toolchain and seeded home; `gateway` is making the egress",
    "gateway's socket and the cell's trust bundle (the rest of the gateway starts beside the cell); `run` is from",
    "spawning the cell until the agent has exited, so it holds the agent's own turn).",
    '',
    `| agent | ${PHASES.join(' | ')} |`,
    `|---|${PHASES.map(() => '---').join('|')}|`,
    ...phaseRows,
  ].join('\n');
  return { title: 'Agent start: `agentcell <agent> -p …` against the bare CLI', markdown, verdicts };
}

// In the order the run marks them; the receipt is signed after its own timings, so it has no `receipt` phase.
const PHASES = ['startup', 'cli', 'policy', 'scan', 'plan', 'agent', 'journal', 'gateway', 'run', 'finalize'];

/** The phase timings the cell run's receipt recorded (untimed: after the run). */
async function receiptTimings(cli: string, workspace: string, env: NodeJS.ProcessEnv): Promise<Record<string, number>> {
  const r = await runAsync([cli, 'receipt', 'show', '--json'], { cwd: workspace, env });
  if (r.status !== 0) return {};
  const parsed = JSON.parse(r.stdout) as { timings?: Record<string, number> };
  return parsed.timings ?? {};
}

function phaseRow(name: string, runs: Record<string, number>[]): string {
  const cell = (phase: string): string => {
    const xs = runs.map((t) => t[phase]).filter((x): x is number => x !== undefined);
    return xs.length === 0 ? '–' : fmt(stats(xs).median);
  };
  return `| ${name} | ${PHASES.map(cell).join(' | ')} |`;
}
