import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, writeFileSync, mkdirSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:https';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeTrees } from '../src/_internal/remove-trees.js';
import { KERNEL_RELAY_NAME } from '../src/egress/stream/kernel-relay.js';
import { makeCerts } from '../test/make-certs.js';
import { anthropicStub, type StubRequest } from '../test/provider-stubs.js';
import { listen, TOOLCHAIN_CACHE } from '../test/helpers.js';
import { envNumber, runAsync, stats, tail } from './async-run.js';
import { fmt } from './measure.js';
import type { Section } from './startup.js';

/**
 * Target 6 of issue 17: N concurrent sessions (default 20) of an idle agent. Each is
 * `agentcell session start --agent claude` (interactive Claude Code, the real CLI,
 * against an HTTPS stub of Anthropic in this process) in a cell of its own, started one
 * after another while the earlier ones keep running; before the next starts, the
 * session's terminal has drawn Claude's prompt (the agent is up and idle).
 *
 * Timed: the wall time of each `session start` (it returns once the cell has started).
 * Memory: once all N are idle, the sum over agentcell's own processes of every session
 * (the pty helper, the supervisor with its in-process egress gateway, the bwrap
 * processes, the egress bridge in the cell) of RSS and of PSS (/proc/PID/smaps_rollup;
 * PSS splits pages shared between processes, e.g. node's text, so the sum is what they
 * take together). The agent's own processes (claude and its children) are not counted.
 * CPU: while all N sit idle, the user + system time of agentcell's processes and of the
 * agents', apart: what else keeps the machine busy when the last sessions start.
 */
const TARGET_MIB = 400;
const TARGET_START = 1.2;
/** Clock ticks per second, the unit of utime and stime in /proc/PID/stat. */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

interface Started {
  id: string;
  ms: number;
  ptyPid: number;
}

export async function sessionsBench(cli: string): Promise<Section> {
  const count = envNumber('BENCH_SESSIONS', 20);
  const root = mkdtempSync(join(tmpdir(), 'agentcell-bench-sessions-'));
  const workspace = join(root, 'repo');
  mkdirSync(workspace, { recursive: true });
  const certs = await makeCerts(root, 'bench stub', ['api.anthropic.com']);
  const seen: StubRequest[] = [];
  const handler = anthropicStub(seen, {
    file: join(workspace, 'hello.txt'),
    content: 'x\n',
    envDump: join(workspace, 'env.txt'),
  });
  const server = createServer({ key: certs.key, cert: certs.cert }, handler);
  const port = await listen(server);
  writeFileSync(join(workspace, 'README.md'), '# a repo\n');
  writeFileSync(
    join(workspace, 'agentcell.toml'),
    [
      '[network]',
      'resolve = { "api.anthropic.com" = "127.0.0.1" }',
      `upstream_ca = [${JSON.stringify(certs.ca)}]`,
      '[env]',
      `ANTHROPIC_BASE_URL = "https://api.anthropic.com:${port}"`,
      '',
    ].join('\n'),
  );
  const env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: join(root, 'home'),
    AGENTCELL_HOME: join(root, 'agentcell'),
    AGENTCELL_TOOLCHAIN_CACHE: TOOLCHAIN_CACHE,
    ANTHROPIC_API_KEY: 'sk-ant-bench-5b1f0c9d8e7a6b5c4d3e',
    TERM: 'xterm-256color',
    LANG: 'C.UTF-8',
  };
  const ac = (...args: string[]) => runAsync([cli, ...args], { cwd: workspace, env });
  const start = async (cell: string): Promise<Started> => {
    const r = await ac(
      'session',
      'start',
      '--cell',
      cell,
      '--agent',
      'claude',
      '--json',
      '--',
      '--model',
      'claude-stub-1',
    );
    if (r.status !== 0) throw new Error(`session start failed: ${tail(r.stdout + r.stderr)}`);
    const record = JSON.parse(r.stdout) as { id: string; pty: { pid: number } };
    // Idle: Claude Code has drawn its prompt.
    for (let waited = 0; ; waited += 250) {
      const logs = await ac('session', 'logs', record.id);
      if (/bypass permissions/i.test(logs.stdout)) break;
      if (waited > 60_000) throw new Error(`session ${record.id} never showed Claude's prompt: ${tail(logs.stdout)}`);
      await sleep(250);
    }
    return { id: record.id, ms: r.ms, ptyPid: record.pty.pid };
  };
  const started: Started[] = [];
  let markdown: string;
  let verdicts: string[];
  try {
    // A warm-up session (the state dir's first run, the toolchain checked), stopped before the measured ones.
    const warm = await start('bench-warm');
    await ac('session', 'stop', warm.id, '--grace', '2');
    for (let i = 1; i <= count; i++) started.push(await start(`bench-${i}`));
    // What the idle sessions keep the CPU busy with, agentcell's processes apart from the agents'.
    const idleMs = 5000;
    const before = started.map((s) => sessionCpu(s.ptyPid));
    await sleep(idleMs);
    const busy = { agentcell: 0, agent: 0 };
    started.forEach((s, i) => {
      for (const [pid, now] of sessionCpu(s.ptyPid)) {
        const then = before[i]?.get(pid);
        if (then) busy[now.agentcell ? 'agentcell' : 'agent'] += now.ticks - then.ticks;
      }
    });
    const coreShare = (ticks: number): number => (ticks / CLOCK_TICKS / (idleMs / 1000)) * 100;
    const memory = started.map((s) => agentcellMemory(s.ptyPid));
    const rss = memory.reduce((a, m) => a + m.rss, 0) / 1024;
    const pss = memory.reduce((a, m) => a + m.pss, 0) / 1024;
    const agentPss = memory.reduce((a, m) => a + m.otherPss, 0) / 1024;
    const perKind = new Map<string, { rss: number; pss: number; n: number }>();
    for (const m of memory)
      for (const p of m.processes) {
        const k = perKind.get(p.kind) ?? { rss: 0, pss: 0, n: 0 };
        perKind.set(p.kind, { rss: k.rss + p.rss / 1024, pss: k.pss + p.pss / 1024, n: k.n + 1 });
      }
    // One start is one sample on a shared machine: the 1st and the Nth are each the median of
    // the first three and the last three starts.
    const edge = Math.min(3, Math.floor(count / 2));
    const first = stats(started.slice(0, edge).map((s) => s.ms)).median;
    const last = stats(started.slice(-edge).map((s) => s.ms)).median;
    const all = stats(started.map((s) => s.ms));
    const ratio = last / first;
    markdown = [
      `${count} sessions, one cell each, started one after another (\`agentcell session start --agent claude\`:`,
      'interactive Claude Code against an HTTPS stub of Anthropic); each was idle at its prompt before the next',
      "started. Memory summed over agentcell's own processes of all sessions once all were idle (the agent's",
      'processes not counted); start time is the wall time of `session start` (it returns once the cell has started).',
      '',
      '| agentcell process, all sessions | count | RSS MiB | PSS MiB |',
      '|---|---|---|---|',
      ...[...perKind].map(([kind, k]) => `| ${kind} | ${k.n} | ${fmt(k.rss)} | ${fmt(k.pss)} |`),
      `| **total** | | **${fmt(rss)}** | **${fmt(pss)}** |`,
      `| (not counted: the agents, claude and children) | | | ${fmt(agentPss)} |`,
      '',
      `| session start | ms |`,
      '|---|---|',
      `| 1st (median of the first ${edge}) | ${fmt(first)} |`,
      `| ${count}th (median of the last ${edge}) | ${fmt(last)} |`,
      `| median of all ${count} (min–max) | ${fmt(all.median)} (${fmt(all.min)}–${fmt(all.max)}) |`,
      `| each, in order | ${started.map((s) => s.ms.toFixed(0)).join(', ')} |`,
      '',
      `CPU used while all ${count} sat idle (${idleMs / 1000} s, user + system time from /proc, in % of one core; the machine has ${cpus().length}):`,
      `agentcell's processes ${fmt(coreShare(busy.agentcell))} %, the agents (claude and children) ${fmt(coreShare(busy.agent))} %.`,
      `Load average (1 min) ${loadavg()[0]?.toFixed(2)} after the last start.`,
    ].join('\n');
    verdicts = [
      `${pss <= TARGET_MIB ? 'met' : 'MISSED'}: ${count} idle sessions: agentcell's own memory ${fmt(pss)} MiB PSS (${fmt(rss)} MiB RSS) in total (target ≤ ${TARGET_MIB} MiB)${pss <= TARGET_MIB ? '' : `; ${fmt(pss / count)} MiB PSS per session, mostly ${[...perKind].sort((a, b) => b[1].pss - a[1].pss)[0]?.[0] ?? '?'}`}`,
      `${ratio <= TARGET_START ? 'met' : 'MISSED'}: the ${count}th session started in ${ratio.toFixed(2)}× the 1st's time (medians of the last and first ${edge}: ${fmt(last)} vs ${fmt(first)} ms; target ≤ ${TARGET_START}×; while idle the ${count} agents kept ${fmt(coreShare(busy.agent))} % of a core busy, agentcell's processes ${fmt(coreShare(busy.agentcell))} %)`,
    ];
  } finally {
    await Promise.all(started.map((s) => ac('session', 'stop', s.id, '--grace', '2')));
    server.close();
    server.closeAllConnections();
    removeTrees([root]);
  }
  return { title: `Many cells: ${count} concurrent idle sessions`, markdown, verdicts };
}

interface ProcessMemory {
  kind: string;
  rss: number;
  pss: number;
}

/** A session's processes: the pty helper and everything under it, each with agentcell's kind or none (the agent). */
function sessionProcesses(ptyPid: number): { pid: number; kind: string | undefined }[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(statFields(Number(entry))[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone
    }
  }
  const found: { pid: number; kind: string | undefined }[] = [];
  const visit = (pid: number): void => {
    try {
      found.push({ pid, kind: kindOf(pid, ptyPid) });
    } catch {
      // gone
    }
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(ptyPid);
  return found;
}

/** /proc/PID/stat after the command name: state, ppid, … (field 3 of proc(5) is index 0). */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * agentcell's processes under a session's pty helper, in KiB: the helper itself, node
 * running agentcell's bundle (the supervisor and its gateway), bwrap, the egress bridge;
 * everything else under it (the agent) is summed apart.
 */
function agentcellMemory(ptyPid: number): { processes: ProcessMemory[]; rss: number; pss: number; otherPss: number } {
  const processes: ProcessMemory[] = [];
  let otherPss = 0;
  for (const { pid, kind } of sessionProcesses(ptyPid)) {
    try {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? 0);
      if (kind === undefined) otherPss += kib('Pss');
      else processes.push({ kind, rss: kib('Rss'), pss: kib('Pss') });
    } catch {
      // gone
    }
  }
  return {
    processes,
    rss: processes.reduce((a, p) => a + p.rss, 0),
    pss: processes.reduce((a, p) => a + p.pss, 0),
    otherPss,
  };
}

/** CPU time (user + system, clock ticks) of a session's processes by pid, agentcell's apart from the agent's. */
function sessionCpu(ptyPid: number): Map<number, { agentcell: boolean; ticks: number }> {
  const cpu = new Map<number, { agentcell: boolean; ticks: number }>();
  for (const { pid, kind } of sessionProcesses(ptyPid)) {
    try {
      const fields = statFields(pid);
      // utime and stime are fields 14 and 15 of proc(5).
      cpu.set(pid, { agentcell: kind !== undefined, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // gone
    }
  }
  return cpu;
}

function kindOf(pid: number, ptyPid: number): string | undefined {
  if (pid === ptyPid) return 'pty helper (script)';
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  let exe = '';
  try {
    exe = readlinkSync(`/proc/${pid}/exe`);
  } catch {
    // a kernel thread or gone
  }
  if (exe.endsWith('/bwrap')) return 'bwrap';
  if (cmdline.some((a) => a.endsWith('agentcell-bridge.cjs'))) return 'egress bridge (in the cell)';
  if (cmdline[0] === KERNEL_RELAY_NAME) return 'kernel relay (perl)';
  if (cmdline.some((a) => /agentcell(-main)?\.cjs$/.test(a))) return 'supervisor + gateway (node)';
  return undefined;
}
