import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KERNEL_RELAY_NAME } from '../src/egress/stream/kernel-relay.js';
import { fmt, quantile } from './measure.js';
import type { Section } from './startup.js';

/**
 * The egress gateway against Debian's squid, side by side in one run, everything on
 * loopback: CONNECT tunnel throughput, the latency a proxy adds to a small request
 * (fresh tunnel per request, and requests on one kept-alive tunnel), and the memory of
 * 50 gateways (one per cell) each carrying a busy tunnel. squid is installed with
 * apt-get when missing and runs from a temp config that allows CONNECT from loopback.
 */

const MiB = 1024 * 1024;
const THROUGHPUT_BYTES = Number(process.env['BENCH_EGRESS_MIB'] ?? 512) * MiB;
const THROUGHPUT_RUNS = 5;
const LATENCY_RUNS = Number(process.env['BENCH_EGRESS_LATENCY_RUNS'] ?? 300);
const CELLS = 50;
const MEMORY_SECONDS = 5;
const TOKEN = 'bench-token-0123456789abcdef';
const RESPONSE = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
const REQUEST = 'GET / HTTP/1.1\r\nHost: bench\r\n\r\n';
const TARGET_LATENCY_MS = 1;
const TARGET_MEMORY_MIB = 80;
/** Units of /proc/PID/stat's utime and stime. */
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

interface Proxy {
  name: string;
  port: number;
  /** Sends the token too (squid ignores it). */
  auth: boolean;
  /** The proxy's process, whose CPU time the throughput runs read. */
  pid: number;
}

/**
 * With two cores or more, each proxy runs on core 0 and this process (the client, sink and
 * source of every tunnel) on core 1. Unpinned, the one process that drives both ends of a
 * tunnel is the bottleneck on a 2-core machine, and the throughput rows would compare it
 * with itself; pinned, the proxy's own core is what limits the rate, the same for both proxies.
 */
const PINNED = cpus().length >= 2 && spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0;

function onProxyCore(argv: string[]): string[] {
  return PINNED ? ['taskset', '-c', '0', ...argv] : argv;
}

function pinThisProcess(cores: string): void {
  if (PINNED) spawnSync('taskset', ['-a', '-p', '-c', cores, String(process.pid)], { stdio: 'ignore' });
}

export async function egressBench(): Promise<Section> {
  pinThisProcess('1');
  try {
    return await egressSection();
  } finally {
    pinThisProcess(`0-${cpus().length - 1}`);
  }
}

async function egressSection(): Promise<Section> {
  ensureSquid();
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-bench-egress-'));
  const sink = await startSink();
  const echo = await startEcho();
  const source = await startSource();
  const rules = { allow: [`127.0.0.1:${sink.port}`, `127.0.0.1:${echo.port}`, `127.0.0.1:${source.port}`] };
  const squid = await startSquid(dir);
  const gateway = await startGateways(1, rules);
  const proxies: Proxy[] = [
    { name: 'agentcell gateway', port: gateway.ports[0]!, auth: true, pid: gateway.child.pid ?? 0 },
    { name: 'squid', port: squid.port, auth: false, pid: squid.pid },
  ];
  try {
    const throughput = await measureThroughput(proxies, sink, source);
    const fresh = await measureLatency(proxies, echo.port, 'fresh');
    const kept = await measureLatency(proxies, echo.port, 'keep-alive');
    gateway.stop();
    const memory = await measureMemory(rules, sink, source, squid);
    return render(throughput, fresh, kept, memory);
  } finally {
    gateway.stop();
    squid.stop();
    sink.server.close();
    echo.server.close();
    source.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function ensureSquid(): void {
  if (spawnSync('squid', ['-v'], { stdio: 'ignore' }).status === 0) return;
  process.stderr.write('bench: installing squid (apt-get)\n');
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const run = (args: string[]): void => {
    const r = spawnSync(sudo[0] ?? args[0]!, [...sudo.slice(1), ...(sudo.length ? args : args.slice(1))], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0) throw new Error(`${args.join(' ')} failed: squid is needed for the egress benchmark`);
  };
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'squid']);
}

// ---- servers on loopback ----------------------------------------------------------------

interface Sink {
  server: Server;
  port: number;
  /** Bytes a connection must bring before it is answered `done`; 0 = never (memory test). */
  expect: number;
  /** Bytes taken in by all connections since the last reset. */
  total: number;
}

/** Swallows bytes; answers `done` once a connection brought `expect` bytes. */
async function startSink(): Promise<Sink> {
  const sink: Sink = { server: createServer(), port: 0, expect: 0, total: 0 };
  sink.server.on('connection', (socket) => {
    let count = 0;
    socket.on('error', () => socket.destroy());
    socket.on('data', (data: Buffer) => {
      count += data.length;
      sink.total += data.length;
      if (sink.expect > 0 && count >= sink.expect) socket.end('done');
    });
  });
  sink.port = await listenLoopback(sink.server);
  return sink;
}

interface Source {
  server: Server;
  port: number;
  /** Bytes each connection gets before the source ends it; 0 = no end (memory test). */
  limit: number;
}

/** Sends bytes to every connection as fast as it takes them, until the connection goes. */
async function startSource(): Promise<Source> {
  const chunk = Buffer.alloc(64 * 1024, 0x63);
  const source: Source = { server: createServer(), port: 0, limit: 0 };
  source.server.on('connection', (socket) => {
    socket.on('error', () => socket.destroy());
    const limit = source.limit;
    let sent = 0;
    const write = (): void => {
      while (!socket.destroyed && (limit === 0 || sent < limit)) {
        sent += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', write);
      }
      if (!socket.destroyed) socket.end();
    };
    write();
  });
  source.port = await listenLoopback(source.server);
  return source;
}

/** A minimal keep-alive HTTP server: one fixed response per request head. */
async function startEcho(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    let buffered = '';
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => {
      buffered += data;
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) !== -1) {
        buffered = buffered.slice(end + 4);
        socket.write(RESPONSE);
      }
    });
  });
  return { server, port: await listenLoopback(server) };
}

function listenLoopback(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

interface Squid {
  port: number;
  pid: number;
  stop(): void;
}

async function startSquid(dir: string): Promise<Squid> {
  const port = await freePort();
  const config = join(dir, 'squid.conf');
  writeFileSync(
    config,
    [
      `http_port 127.0.0.1:${port}`,
      'http_access allow localhost',
      'http_access deny all',
      'cache deny all',
      'cache_mem 0 MB',
      'access_log none',
      'cache_store_log none',
      'cache_log /dev/null',
      'pid_filename none',
      `coredump_dir ${dir}`,
      'visible_hostname agentcell-bench',
      'shutdown_lifetime 0 seconds',
      '',
    ].join('\n'),
  );
  const [command, ...args] = onProxyCore(['squid', '-N', '-f', config]);
  const child = spawn(command!, args, { stdio: 'ignore' });
  const stop = (): void => void child.kill('SIGKILL');
  for (let i = 0; i < 200; i++) {
    if (await accepts(port)) return { port, pid: child.pid ?? 0, stop };
    await sleep(50);
  }
  stop();
  throw new Error('squid did not start listening within 10 s');
}

async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listenLoopback(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

interface Gateways {
  ports: number[];
  child: ChildProcess;
  stop(): void;
}

/** COUNT gateways in one process of their own (bench/egress-gateway-process.ts). */
async function startGateways(count: number, rules: object): Promise<Gateways> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'egress-gateway-process.js');
  const [command, ...args] = onProxyCore([process.execPath, script, String(count), JSON.stringify(rules), TOKEN]);
  const child = spawn(command!, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const ports = await new Promise<number[]>((resolve, reject) => {
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve((JSON.parse(out) as { ports: number[] }).ports);
    });
    child.once('exit', (code) => reject(new Error(`the gateway process exited ${String(code)}`)));
  });
  return { ports, child, stop: () => void child.stdin?.end() };
}

// ---- clients -----------------------------------------------------------------------------

/** CONNECT to 127.0.0.1:port through a proxy; resolves with the tunnel once it says 200. */
function openTunnel(proxy: Proxy, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(proxy.port, '127.0.0.1');
    socket.setNoDelay(true);
    const auth = proxy.auth
      ? `Proxy-Authorization: Basic ${Buffer.from(`agentcell:${TOKEN}`).toString('base64')}\r\n`
      : '';
    let head = '';
    const onData = (data: Buffer): void => {
      head += data.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      socket.pause(); // until the caller listens: a server that speaks first must lose nothing
      if (!/^HTTP\/1\.[01] 200/.test(head)) return reject(new Error(`${proxy.name}: ${head.split('\r\n')[0]}`));
      const rest = head.slice(end + 4);
      if (rest.length > 0) socket.unshift(Buffer.from(rest, 'latin1'));
      resolve(socket);
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${auth}\r\n`);
  });
}

function directSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.setNoDelay(true);
    socket.once('error', reject);
  });
}

/** Writes `bytes` as fast as the socket takes them; resolves when the sink says done. */
function push(socket: Socket, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  return new Promise((resolve, reject) => {
    let sent = 0;
    socket.once('error', reject);
    socket.on('data', (data: Buffer) => {
      if (data.toString().includes('done')) {
        socket.destroy();
        resolve();
      }
    });
    socket.resume();
    const write = (): void => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', write);
      }
    };
    write();
  });
}

/** One request, read until the fixed response is complete. */
function exchange(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (data: Buffer): void => {
      got += data.length;
      if (got < RESPONSE.length) return;
      socket.off('data', onData);
      socket.off('error', reject);
      resolve();
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.resume();
    socket.write(REQUEST);
  });
}

// ---- measurements ------------------------------------------------------------------------

interface Rate {
  name: string;
  /** MiB/s client → server, and server → client. */
  up: number;
  down: number;
  /** The proxy process's CPU time (user + system) per GiB relayed, each way; undefined for direct. */
  cpuUp?: number;
  cpuDown?: number;
}

async function measureThroughput(proxies: readonly Proxy[], sink: Sink, source: Source): Promise<Rate[]> {
  sink.expect = THROUGHPUT_BYTES;
  source.limit = THROUGHPUT_BYTES;
  const subjects = (port: number) => [
    { name: 'direct', pid: undefined, open: () => directSocket(port) },
    ...proxies.map((p) => ({ name: p.name, pid: p.pid, open: () => openTunnel(p, port) })),
  ];
  const up = subjects(sink.port);
  const down = subjects(source.port);
  const samples = up.map(() => ({
    up: [] as number[],
    down: [] as number[],
    cpuUp: [] as number[],
    cpuDown: [] as number[],
  }));
  const GiB = THROUGHPUT_BYTES / (1024 * MiB);
  // CPU time is what a noisy neighbour disturbs least: it says what a relayed byte costs.
  const timed = async (pid: number | undefined, transfer: () => Promise<void>): Promise<[number, number]> => {
    const cpu = pid === undefined ? 0 : cpuMs(pid);
    const started = process.hrtime.bigint();
    await transfer();
    const rate = THROUGHPUT_BYTES / MiB / (Number(process.hrtime.bigint() - started) / 1e9);
    await sleep(20); // the proxy's own close of the tunnel
    // A kernel relay's helper exits with its tunnel: once reaped its CPU is in the gateway's cutime/cstime.
    if (pid !== undefined) await helpersGone(pid);
    return [rate, pid === undefined ? 0 : (cpuMs(pid) - cpu) / GiB];
  };
  for (let round = 0; round < THROUGHPUT_RUNS; round++)
    for (let i = 0; i < up.length; i++) {
      const sample = samples[i]!;
      const [upRate, upCpu] = await timed(up[i]!.pid, async () => push(await up[i]!.open(), THROUGHPUT_BYTES));
      const [downRate, downCpu] = await timed(down[i]!.pid, async () => pull(await down[i]!.open(), THROUGHPUT_BYTES));
      sample.up.push(upRate);
      sample.down.push(downRate);
      sample.cpuUp.push(upCpu);
      sample.cpuDown.push(downCpu);
    }
  sink.expect = 0;
  source.limit = 0;
  return up.map((s, i) => ({
    name: s.name,
    up: median(samples[i]!.up),
    down: median(samples[i]!.down),
    ...(s.pid === undefined ? {} : { cpuUp: median(samples[i]!.cpuUp), cpuDown: median(samples[i]!.cpuDown) }),
  }));
}

/** /proc/PID/stat after the command name: state, ppid, … (field 3 of proc(5) is index 0). */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * CPU time (user + system) a process and its reaped children have used, in ms: the
 * gateway's children are its kernel relays (src/egress/stream/kernel-relay.ts), which move
 * a bulk tunnel's bytes after its first MiBs, and what a relayed byte costs includes theirs.
 */
function cpuMs(pid: number): number {
  const fields = statFields(pid);
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return (ticks * 1000) / CLOCK_TICKS;
}

/** The kernel relays' helpers whose parent is `pid`. */
function relayHelpers(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(statFields(Number(entry))[1]) !== pid) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')[0] === KERNEL_RELAY_NAME)
        found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

/** Waits (up to 2 s) until `pid` has no kernel relay left, exited and reaped. */
async function helpersGone(pid: number): Promise<void> {
  for (let waited = 0; waited < 2_000 && relayHelpers(pid).length > 0; waited += 10) await sleep(10);
}

/** Reads until `bytes` have come. */
function pull(socket: Socket, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    socket.once('error', reject);
    socket.on('data', (data: Buffer) => {
      got += data.length;
      if (got < bytes) return;
      socket.destroy();
      resolve();
    });
    socket.resume();
  });
}

interface Latency {
  name: string;
  medianMs: number;
  p90Ms: number;
}

async function measureLatency(
  proxies: readonly Proxy[],
  port: number,
  how: 'fresh' | 'keep-alive',
): Promise<Latency[]> {
  const subjects = [
    { name: 'direct', open: () => directSocket(port) },
    ...proxies.map((p) => ({ name: p.name, open: () => openTunnel(p, port) })),
  ];
  const kept = how === 'keep-alive' ? await Promise.all(subjects.map((s) => s.open())) : [];
  const samples = subjects.map(() => [] as number[]);
  const warmup = 20;
  for (let round = 0; round < warmup + LATENCY_RUNS; round++)
    for (const [i, subject] of subjects.entries()) {
      const started = process.hrtime.bigint();
      const socket = kept[i] ?? (await subject.open());
      await exchange(socket);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (!kept[i]) socket.destroy();
      if (round >= warmup) samples[i]!.push(ms);
    }
  for (const socket of kept) socket.destroy();
  return subjects.map((s, i) => {
    const sorted = [...samples[i]!].sort((a, b) => a - b);
    return { name: s.name, medianMs: quantile(sorted, 0.5), p90Ms: quantile(sorted, 0.9) };
  });
}

interface Memory {
  name: string;
  idleMiB: number;
  peakMiB: number;
  mibPerSecond: number;
}

type Direction = 'download' | 'upload';

/**
 * CELLS busy tunnels, each way: through CELLS gateways in one process (and one gateway
 * with one tunnel, for scale), and through one squid. A fresh gateway process for each
 * measurement, since RSS does not shrink back.
 */
async function measureMemory(rules: object, sink: Sink, source: Source, squid: Squid): Promise<Memory[]> {
  const rows: Memory[] = [];
  const bare = await bareNodeRss();
  rows.push({ name: 'node itself (no gateway, idle)', idleMiB: bare, peakMiB: bare, mibPerSecond: 0 });
  for (const direction of ['download', 'upload'] as const) {
    for (const count of [1, CELLS]) {
      const gateways = await startGateways(count, rules);
      try {
        const pid = gateways.child.pid ?? 0;
        const proxies = gateways.ports.map((port) => ({ name: 'agentcell gateway', port, auth: true, pid }));
        const measured = await busyTunnels(gateways.child.pid ?? 0, proxies, direction, sink, source);
        const label = count === 1 ? '1 gateway, 1 tunnel' : `${CELLS} gateways, one process`;
        rows.push({ name: `${direction}: agentcell, ${label}`, ...measured });
      } finally {
        gateways.stop();
      }
    }
    const proxies = Array.from({ length: CELLS }, () => ({
      name: 'squid',
      port: squid.port,
      auth: false,
      pid: squid.pid,
    }));
    const measured = await busyTunnels(squid.pid, proxies, direction, sink, source);
    rows.push({ name: `${direction}: squid, one process, ${CELLS} tunnels`, ...measured });
  }
  return rows;
}

async function busyTunnels(
  pid: number,
  proxies: readonly Proxy[],
  direction: Direction,
  sink: Sink,
  source: Source,
): Promise<Omit<Memory, 'name'>> {
  const idle = statusKiB(pid, 'VmRSS');
  const port = direction === 'upload' ? sink.port : source.port;
  const tunnels = await Promise.all(proxies.map((p) => openTunnel(p, port)));
  const chunk = Buffer.alloc(64 * 1024, 0x62);
  let running = true;
  let downloaded = 0;
  for (const socket of tunnels) {
    socket.on('error', () => undefined);
    if (direction === 'download') {
      socket.on('data', (data: Buffer) => (downloaded += data.length));
      socket.resume();
      continue;
    }
    const write = (): void => {
      while (running && socket.write(chunk));
      if (running) socket.once('drain', write);
    };
    write();
  }
  sink.total = 0;
  let peak = 0;
  const started = Date.now();
  while (Date.now() - started < MEMORY_SECONDS * 1000) {
    await sleep(100);
    // With the kernel relays' helpers (the gateway's children), whose RSS is theirs.
    const helpers = relayHelpers(pid).reduce((sum, child) => sum + statusKiB(child, 'VmRSS'), 0);
    peak = Math.max(peak, statusKiB(pid, 'VmRSS') + helpers);
  }
  const seconds = (Date.now() - started) / 1000;
  running = false;
  for (const socket of tunnels) socket.destroy();
  const bytes = direction === 'upload' ? sink.total : downloaded;
  return { idleMiB: idle / 1024, peakMiB: peak / 1024, mibPerSecond: bytes / MiB / seconds };
}

/** RSS of a node process that has started and does nothing: the floor under any gateway process. */
async function bareNodeRss(): Promise<number> {
  const child = spawn(
    process.execPath,
    ['-e', 'process.stdin.resume(); process.stdin.on("end", () => process.exit(0))'],
    {
      stdio: ['pipe', 'ignore', 'ignore'],
    },
  );
  await sleep(500);
  const rss = statusKiB(child.pid ?? 0, 'VmRSS') / 1024;
  child.stdin?.end();
  return rss;
}

function statusKiB(pid: number, field: string): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? 0);
}

// ---- report ------------------------------------------------------------------------------

function render(throughput: Rate[], fresh: Latency[], kept: Latency[], memory: Memory[]): Section {
  const direct = (rows: Latency[]): number => rows.find((r) => r.name === 'direct')?.medianMs ?? 0;
  const latencyRows = (how: string, rows: Latency[]): string[] =>
    rows.map(
      (r) =>
        `| ${how} | ${r.name} | ${r.medianMs.toFixed(3)} | ${r.p90Ms.toFixed(3)} | ${r.name === 'direct' ? '—' : `+${(r.medianMs - direct(rows)).toFixed(3)}`} |`,
    );
  const markdown = [
    `CONNECT tunnels on loopback. agentcell's gateway runs in a node process of its own, squid ${squidVersion()} from a temp config; client and servers share the bench process.${PINNED ? ' Each proxy runs pinned to core 0, the bench process to core 1 (taskset), so the proxy is what limits a tunnel.' : ''}`,
    '',
    `Throughput: ${THROUGHPUT_BYTES / MiB} MiB through one tunnel, pushed to a sink (upload) and pulled from a source (download), median of ${THROUGHPUT_RUNS}, interleaved. The client, sink and source share one process, which limits "direct"; the proxy's CPU time (user + system, from /proc; the gateway's with its kernel relays', src/egress/stream/kernel-relay.ts, which move a tunnel's bytes after its first 4 MiB) per GiB relayed is what a byte costs it, and moves least with other load on the machine.`,
    '',
    '| path | upload MiB/s | download MiB/s | proxy CPU ms/GiB up | proxy CPU ms/GiB down |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...throughput.map(
      (r) =>
        `| ${r.name} | ${fmt(r.up)} | ${fmt(r.down)} | ${r.cpuUp === undefined ? '—' : r.cpuUp.toFixed(0)} | ${r.cpuDown === undefined ? '—' : r.cpuDown.toFixed(0)} |`,
    ),
    '',
    `Latency of one small HTTP request/response, ${LATENCY_RUNS} runs each, interleaved: "fresh" opens a new tunnel (TCP connect + CONNECT) per request, "keep-alive" reuses one.`,
    '',
    '| how | path | median ms | p90 ms | added (median) |',
    '| --- | --- | ---: | ---: | ---: |',
    ...latencyRows('fresh', fresh),
    ...latencyRows('keep-alive', kept),
    '',
    `Memory with ${CELLS} cells' traffic: for ${MEMORY_SECONDS} s each tunnel downloads from a source that sends as fast as it can (or uploads to a sink the same way); RSS of the proxy process (the gateway's with its kernel relays', at most 4 per process, each a perl process of its own), sampled every 100 ms. Both directions read into reused buffers shared by the process (src/egress/stream/pooled-reads.ts; accepted sockets are re-wrapped for it by pooled-accept.ts) instead of node's fresh buffer per read, which waits for V8 to collect it.`,
    '',
    '| proxy | RSS idle MiB | RSS peak MiB | total MiB/s |',
    '| --- | ---: | ---: | ---: |',
    ...memory.map((m) => `| ${m.name} | ${fmt(m.idleMiB)} | ${fmt(m.peakMiB)} | ${fmt(m.mibPerSecond)} |`),
  ].join('\n');
  const ours = (rows: Latency[]): number =>
    (rows.find((r) => r.name === 'agentcell gateway')?.medianMs ?? 0) - direct(rows);
  const rate = (name: string, way: 'up' | 'down'): number => throughput.find((r) => r.name === name)?.[way] ?? 0;
  const peak = (direction: Direction): number =>
    memory.find((m) => m.name.startsWith(`${direction}: agentcell, ${CELLS} gateways`))?.peakMiB ?? 0;
  const verdict = (ok: boolean, text: string): string => `${ok ? 'met' : 'MISSED'}: ${text}`;
  return {
    title: 'Egress gateway vs squid',
    markdown,
    verdicts: [
      ...(['up', 'down'] as const).map((way) =>
        verdict(
          rate('agentcell gateway', way) >= rate('squid', way),
          `tunnel ${way === 'up' ? 'upload' : 'download'} throughput ≥ squid (${fmt(rate('agentcell gateway', way))} vs ${fmt(rate('squid', way))} MiB/s)`,
        ),
      ),
      verdict(
        ours(fresh) <= TARGET_LATENCY_MS && ours(kept) <= TARGET_LATENCY_MS,
        `added latency ≤ ${TARGET_LATENCY_MS} ms median (fresh tunnel +${ours(fresh).toFixed(3)} ms, keep-alive +${ours(kept).toFixed(3)} ms)`,
      ),
      ...(['download', 'upload'] as const).map((direction) =>
        verdict(
          peak(direction) <= TARGET_MEMORY_MIB,
          `${CELLS} gateways with a busy ${direction} each ≤ ${TARGET_MEMORY_MIB} MiB RSS (${fmt(peak(direction))} MiB peak)`,
        ),
      ),
    ],
  };
}

function squidVersion(): string {
  return /Version (\S+)/.exec(spawnSync('squid', ['-v'], { encoding: 'utf8' }).stdout)?.[1] ?? '?';
}

function median(values: number[]): number {
  return quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// `node dist/bench/egress.js` runs this suite alone and prints its section.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const section = await egressBench();
  process.stdout.write(
    `## ${section.title}\n\n${section.markdown}\n\n${section.verdicts.map((v) => `- ${v}`).join('\n')}\n`,
  );
  process.exit(0);
}
