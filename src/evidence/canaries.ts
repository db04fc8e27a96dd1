import { randomBytes } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import type { CellSpec } from '../backends/backend.js';
import { AgentcellError } from '../errors.js';
import { makeDirs } from '../_internal/make-dirs.js';
import { makeNeutralDir, neutralRunEntry, neutralRuntimeDir } from '../_internal/neutral-dir.js';
import { CANARY_HOST } from '../_internal/vocabulary.js';
import { PROXY_USER } from '../egress/gateway/proxy-auth.js';
import {
  CANARY_RESULTS,
  CELL_CANARY_DIR,
  PLAN_RUN_ON,
  planLine,
  withCanaryPrelude,
  type PreludeShell,
} from './canary-script.js';

/**
 * Enforcement canaries (DESIGN: Evidence): before the command, the cell probes its own
 * boundary from inside (canary-script.ts) and the results go signed into the receipt.
 * A probe that gets through stops the run before the command, in every mode but
 * breakglass, where it is labeled instead.
 *
 * How they travel: `withCanaries` (at prepare, pure) wraps the argv in the prelude and
 * binds a per-run dir at CELL_CANARY_DIR; `startCanaries` (at run, before the cell
 * starts) makes the dir and writes the plan; `readCanaryResults` (after the run) reads
 * what the prelude wrote, then removes the dir.
 *
 * The results file is in the cell's reach once the command runs, so a command could
 * rewrite it afterwards. That can't let a command run past a failed canary (the prelude
 * refuses to exec it), only blur the record of a run whose canaries all held.
 */

export const CANARY_PROBES = [
  'masked-file',
  'masked-dir',
  'host-path',
  'write-outside',
  'direct-tcp',
  'metadata',
  'dns',
  'gateway-deny',
] as const;
export type CanaryProbe = (typeof CANARY_PROBES)[number];
export type CanaryResult = 'blocked' | 'through' | 'skipped' | 'inconclusive';

/** One probe's outcome, as the receipt's `enforcement` records it. */
export interface EnforcementProbe {
  probe: string;
  result: CanaryResult;
  detail: string;
}

export interface CanaryPlan {
  /** The run's canary dir on the host (made by `startCanaries`, removed by `readCanaryResults`). */
  hostDir: string;
  /** The probe calls the prelude sources (what --dry-run shows). */
  plan: readonly string[];
  /**
   * The gateway probe's Proxy-Authorization credential, from the run's token: written into
   * the plan file only (the cell has the token anyway), never into what is printed.
   */
  gatewayAuth?: string;
  /** breakglass: record what got through, but run the command. */
  stop: boolean;
  /** The gateway is asked for CANARY_HOST (and must refuse it) before the command starts. */
  probesGateway: boolean;
}

export interface CanaryInput {
  /** The cell's state dir: the run's canary dir goes under it. */
  cellDir: string;
  mode: 'strict' | 'development' | 'build' | 'breakglass';
  /** Host paths no cell may see (agentcell's keys and state) and the host home, checked for entries. */
  hostPaths: string[];
  hostHome: string;
  /** The cell's root is writable (a directory rootfs with its own layer): /usr is no canary there. */
  rootWritable: boolean;
  /** network.mode = "learn": the gateway refuses no name for lack of an allow entry, so it has no gateway-deny to prove. */
  learn: boolean;
  /** An OCI cell: its image's root, which the host can't look into, so the prelude runs in /bin/sh. */
  image: boolean;
}

/** Public and metadata addresses a cell without open network must not reach (port 80 and 443). */
const DIRECT_TARGETS: [CanaryProbe, string, string][] = [
  ['direct-tcp', '1.1.1.1', '443'],
  ['metadata', '169.254.169.254', '80'],
];
/** A name that resolves wherever DNS works; the cell must not resolve it itself. */
const DNS_NAME = 'example.com';
/** A name no policy can allow (`.invalid` is reserved): the gateway must refuse it. */
const DENIED_HOST = CANARY_HOST;

/** The spec with the canary prelude in front of its command, and the plan the run gives it. */
export function withCanaries(spec: CellSpec, input: CanaryInput): { spec: CellSpec; canaries: CanaryPlan } {
  // On the host's /dev/shm where there is one, so the bind names no host path in the cell's mountinfo.
  const neutral = neutralRuntimeDir();
  const name = randomBytes(8).toString('hex');
  const hostDir = neutral
    ? join(neutral, neutralRunEntry('enforcement', name))
    : join(input.cellDir, 'enforcement', name);
  // Learn mode refuses no name for lack of an allow entry: no gateway-deny to prove there.
  const probesGateway = spec.network === 'gateway' && !input.learn;
  // The network probes first: the gateway's round trip then runs alongside the others.
  const plan = [
    ...networkProbes(spec, probesGateway),
    ...maskProbes(spec),
    ...hostPathProbes(spec, input),
    ...writeProbes(spec, input),
  ];
  if (input.mode === 'breakglass') plan.push(PLAN_RUN_ON);
  const token = spec.network === 'gateway' ? spec.env['AGENTCELL_PROXY_TOKEN'] : undefined;
  return {
    spec: {
      ...spec,
      argv: withCanaryPrelude(spec.argv, input.image ? '/bin/sh' : preludeShell(spec)),
      mounts: [...spec.mounts, { source: hostDir, target: CELL_CANARY_DIR, mode: 'rw' }],
    },
    canaries: {
      hostDir,
      plan,
      stop: input.mode !== 'breakglass',
      probesGateway,
      ...(token !== undefined ? { gatewayAuth: Buffer.from(`${PROXY_USER}:${token}`).toString('base64') } : {}),
    },
  };
}

/**
 * Makes the run's canary dir (writable by the cell's user, whichever host uid it maps to),
 * writes the plan and makes the results file the cell appends to (so the cell's umask does
 * not decide whether the host can read it back).
 */
export function startCanaries(canaries: CanaryPlan): void {
  const parent = dirname(canaries.hostDir);
  if (parent === neutralRuntimeDir()) makeNeutralDir(parent);
  makeDirs(canaries.hostDir, 0o700);
  // Under a 0700 dir of this user (the neutral dir or the cell's state dir): only the cell (any uid it runs as) and the host user reach it.
  chmodSync(canaries.hostDir, 0o777);
  const auth = canaries.gatewayAuth === undefined ? [] : [`_ac_auth=${canaries.gatewayAuth}`];
  writeFileSync(join(canaries.hostDir, 'plan'), `${[...auth, ...canaries.plan].join('\n')}\n`, { mode: 0o644 });
  const results = join(canaries.hostDir, CANARY_RESULTS);
  writeFileSync(results, '', { mode: 0o666 });
  chmodSync(results, 0o666);
}

export interface CanaryReport {
  probes: EnforcementProbe[];
  /** The prelude stopped the run before the command. */
  stopped: boolean;
  /** The first probe that got through, if any. */
  through?: EnforcementProbe;
}

/**
 * What the prelude reported; undefined when it never ran (the cell failed to start, or
 * the egress bridge's prelude stopped first). Removes the run's canary dir.
 */
export function readCanaryResults(canaries: CanaryPlan): CanaryReport | undefined {
  let text: string;
  try {
    text = readFileSync(join(canaries.hostDir, CANARY_RESULTS), 'utf8');
  } catch {
    return undefined;
  } finally {
    rmSync(canaries.hostDir, { recursive: true, force: true });
  }
  const probes: EnforcementProbe[] = [];
  let end: string | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [probe = '', result = '', ...rest] = line.split('\t');
    if (probe === 'end') end = result;
    else if (isResult(result)) probes.push({ probe, result, detail: rest.join(' ') });
  }
  if (end === undefined)
    probes.push({ probe: 'prelude', result: 'inconclusive', detail: 'the canary prelude did not finish' });
  const through = probes.find((p) => p.result === 'through');
  return { probes, stopped: end === 'stop', ...(through ? { through } : {}) };
}

/** Removes the run's canary dir if it is still there (a run that failed before `readCanaryResults`). */
export function discardCanaries(canaries: CanaryPlan): void {
  rmSync(canaries.hostDir, { recursive: true, force: true });
}

/** The error a run stopped by a canary ends with (exit 3), after its receipt is written. */
export function canaryStopError(report: CanaryReport, receiptId: string): AgentcellError {
  const p = report.through;
  const what = p ? `${p.probe} got through (${p.detail})` : 'a probe got through';
  return new AgentcellError(
    'ENFORCEMENT_FAILED',
    `enforcement canary ${what}: the cell does not hold its policy here, so the command did not run (receipt ${receiptId}); run agentcell doctor --probe, and check the backend and policy`,
  );
}

/** Assurance reasons a report adds: what got through (breakglass runs on) or could not be told. */
export function canaryAssuranceReasons(report: CanaryReport | undefined): string[] {
  if (!report) return ['enforcement canaries did not run'];
  return report.probes
    .filter((p) => p.result === 'through' || p.result === 'inconclusive')
    .map(
      (p) => `enforcement canary ${p.probe} ${p.result === 'through' ? 'got through' : 'inconclusive'}: ${p.detail}`,
    );
}

/** bash when the cell's root (the host's or a directory rootfs) has it at /bin/bash, else sh. */
function preludeShell(spec: CellSpec): PreludeShell {
  const root = spec.rootfs.kind === 'directory' ? spec.rootfs.path : '/';
  return statOf(join(root, 'bin/bash'))?.isFile() ? '/bin/bash' : '/bin/sh';
}

function isResult(value: string): value is CanaryResult {
  return value === 'blocked' || value === 'through' || value === 'skipped' || value === 'inconclusive';
}

/** The first masked workspace file and dir that hold something on the host (an empty one proves nothing). */
function maskProbes(spec: CellSpec): string[] {
  const inWorkspace = spec.masks.filter((m) => isInside(spec.workspace.path, m.target) && plain(m.target));
  const file = inWorkspace.find((m) => m.kind === 'file' && (statOf(m.target)?.size ?? 0) > 0);
  const dir = inWorkspace.find((m) => m.kind === 'dir' && nonEmptyDir(m.target));
  return [
    file ? planLine('masked_file', file.target) : planLine('skip', 'masked-file', 'no non-empty masked file'),
    dir ? planLine('masked_dir', dir.target) : planLine('skip', 'masked-dir', 'no non-empty masked directory'),
  ];
}

/** agentcell's own dirs and one entry of the host home that no mount of the cell puts there. */
function hostPathProbes(spec: CellSpec, input: CanaryInput): string[] {
  const bound = [spec.workspace.path, ...spec.mounts.map((m) => m.target), ...spec.masks.map((m) => m.target)];
  const shown = (path: string): boolean => bound.some((b) => isInside(path, b) || isInside(b, path));
  const paths = input.hostPaths.filter((p) => plain(p) && statOf(p) !== undefined && !shown(p));
  const entry = firstEntry(input.hostHome, (path) => plain(path) && !shown(path));
  if (entry) paths.push(entry);
  if (paths.length === 0) return [planLine('skip', 'host-path', 'no host path to look for')];
  return paths.map((p) => planLine('host_path', p));
}

/** Writes that must fail: host system files, the repo's control files, a read-only workspace. */
function writeProbes(spec: CellSpec, input: CanaryInput): string[] {
  const targets = [
    ...(input.rootWritable ? [] : ['/usr']),
    ...spec.readonlyPaths.slice(0, 1),
    ...(spec.workspace.mode === 'readonly' ? [spec.workspace.path] : []),
  ].filter(plain);
  if (targets.length === 0) return [planLine('skip', 'write-outside', 'nothing read-only to write to')];
  return targets.map((t) => planLine('write_refused', t));
}

function networkProbes(spec: CellSpec, denies: boolean): string[] {
  if (spec.network === 'open')
    return ['direct-tcp', 'metadata', 'dns', 'gateway-deny'].map((p) => planLine('skip', p, 'network open'));
  // The gateway first: its CONNECT goes out now and its answer is read after every other probe.
  const groups = [
    ...(denies ? ['gateway', DENIED_HOST] : []),
    ...DIRECT_TARGETS.flatMap(([probe, host, port]) => ['tcp', probe, host, port]),
    'dns',
    DNS_NAME,
  ];
  const why = spec.network === 'gateway' ? 'network learn (the gateway refuses no name)' : 'no gateway (network none)';
  return [planLine('net', ...groups), ...(denies ? [] : [planLine('skip', 'gateway-deny', why)])];
}

/**
 * A path a probe may name: no control characters, since results are lines of tab-separated
 * fields (a repo's file named with a newline could otherwise forge a result line).
 */
function plain(path: string): boolean {
  return !/[\x00-\x1f]/.test(path);
}

function firstEntry(dir: string, keep: (path: string) => boolean): string | undefined {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return undefined;
  }
  for (const name of names) {
    const path = join(dir, name);
    const stat = statOf(path);
    if (stat && (stat.isDirectory() ? nonEmptyDir(path) : stat.size > 0) && keep(path)) return path;
  }
  return undefined;
}

function statOf(path: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function nonEmptyDir(path: string): boolean {
  try {
    return readdirSync(path).length > 0;
  } catch {
    return false;
  }
}

function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep));
}
