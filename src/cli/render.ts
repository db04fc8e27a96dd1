import type { Assurance } from '../policy/assurance.js';
import type { RunOutcome } from '../backends/backend.js';
import type { PreparedAgent } from '../agents/prepare-agent.js';
import type { PreparedRun } from '../run/prepare-run.js';
import type { AfterRun } from '../run/decide-after-run.js';
import { inspectionSummary } from '../cell/plan-inspection.js';
import type { DockerApiPlan } from '../backends/docker-api-container.js';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import { unwrapCanaryPrelude } from '../evidence/canary-script.js';

/** Quote for a POSIX shell only where needed, so a printed plan can be pasted. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export function assuranceText(a: DeepReadonly<Assurance>): string {
  if (a.reasons.length === 0) return a.level;
  // strict has already refused every lowering the user chose; what is left is the host's.
  const whose = a.mode === 'strict' ? 'host limits, labeled not refused: ' : '';
  return `${a.level} (${whose}${a.reasons.join('; ')})`;
}

/** The one-line banner every run prints on stderr before the command starts. */
export function bannerLine(p: PreparedRun): string {
  const { policy } = p.resolved;
  return (
    `agentcell: cell ${p.cell} · ${p.backend.name} · mode ${policy.cell.mode} · workspace ${p.spec.workspace.mode}` +
    ` · network ${policy.network.mode} · assurance ${assuranceText(p.assurance)}`
  );
}

/** What --json reports about a prepared run (no secret values: env is names only). */
export function runSummary(p: PreparedRun): Record<string, unknown> {
  return {
    cell: p.cell,
    workspace: { path: p.workspace, mode: p.spec.workspace.mode },
    backend: p.backend.name,
    policy: { hash: p.resolved.hash, mode: p.resolved.policy.cell.mode, files: p.resolved.files },
    assurance: p.assurance,
    network: p.resolved.policy.network.mode,
    masked: p.spec.masks.map((m) => m.target),
    ...(p.trackedSecrets ? { trackedSecrets: p.trackedSecrets } : {}),
    readonly: p.spec.readonlyPaths,
    env: Object.keys(p.spec.env).sort(),
    command: unwrapCanaryPrelude(p.spec.argv),
  };
}

export function dryRunJson(p: PreparedRun): Record<string, unknown> {
  return {
    dryRun: true,
    ...runSummary(p),
    plan: {
      argv: p.plan.argv,
      fds: p.plan.fds,
      gaps: p.plan.gaps,
      env: Object.keys(p.plan.env).sort(),
      ...(p.plan.hostMount ? { hostMount: p.plan.hostMount } : {}),
      ...(p.plan.api ? { dockerApi: p.plan.api } : {}),
      ...(p.plan.cgroups ? { cgroups: p.plan.cgroups } : {}),
      ...(p.spec.image ? { image: p.spec.image } : {}),
      canaries: p.canaries.plan,
    },
    ...(p.agent ? { agent: p.agent } : {}),
    ...(inspection(p) ? { inspection: inspection(p) } : {}),
  };
}

export function dryRunText(p: PreparedRun): string {
  const lines = [bannerLine(p), ''];
  if (p.plan.hostMount)
    lines.push(
      'first, on the host (mounts, then holds the mount until the run ends):',
      formatArgv(p.plan.hostMount),
      '',
    );
  if (p.plan.api) lines.push(...dockerApiLines(p.plan.api), '');
  else lines.push('would run:', formatArgv(p.plan.argv), '');
  for (const setting of p.plan.cgroups?.settings ?? []) lines.push(`cgroup limit: ${setting.path} = ${setting.value}`);
  if (p.spec.image) lines.push(`image: ${p.spec.image.ref} (${p.spec.image.digest})`);
  lines.push(`environment (names): ${Object.keys(p.plan.env).sort().join(' ')}`);
  for (const fd of p.plan.fds) lines.push(`fd ${fd.fd}: ${fd.purpose}`);
  if (p.spec.masks.length > 0) lines.push(`masked in the workspace: ${p.spec.masks.map((m) => m.target).join(', ')}`);
  if (p.spec.readonlyPaths.length > 0) lines.push(`read-only control files: ${p.spec.readonlyPaths.join(', ')}`);
  if (p.agent) lines.push(agentLine(p.agent));
  const inspected = inspection(p);
  if (inspected) {
    const secrets = inspected.secrets.map((s) => `${s.name} → ${s.host} (${s.header})`);
    lines.push(
      `TLS inspection (cell CA ${inspected.ca}): inspect ${inspected.inspect.join(', ') || '-'}; ${inspected.rules} rule(s); proxy secrets ${secrets.join(', ') || '-'}`,
    );
  }
  const sources = [...(p.agent ? [`agent ${p.agent.name}`] : []), ...p.resolved.files];
  lines.push(`policy ${p.resolved.hash} from ${sources.length ? sources.join(', ') : 'built-in defaults'}`);
  lines.push('(dry run: nothing was started or written)');
  return lines.join('\n');
}

function agentLine(agent: DeepReadonly<PreparedAgent>): string {
  const { toolchain } = agent;
  const from =
    toolchain.source === 'npm'
      ? `${toolchain.npmPackage}@${toolchain.version} in ${toolchain.dir}${toolchain.installed ? '' : ' (not installed yet: the run installs it)'}`
      : `the host's ${toolchain.dir}`;
  return `agent ${agent.name}: ${from}; home ${agent.home} seeded with ${agent.seeds.map((s) => `~/${s.path}`).join(', ') || 'nothing'}`;
}

/**
 * One option and its values per line, each wrapped program (after a bare `--`) starting
 * a line of its own: readable, and still pasteable into a shell.
 */
/** The Docker Engine API requests, in order; variables by name (the run sends each value). */
function dockerApiLines(api: DeepReadonly<DockerApiPlan>): string[] {
  const body = JSON.stringify(api.create, null, 2).replace(/\n/g, '\n  ');
  return [
    `would send to the Docker Engine API at ${api.socket}:`,
    `  POST ${api.createPath}`,
    `  ${body}`,
    ...[api.attachPath, api.waitPath, api.startPath].map((path) => `  POST ${path}`),
    ...(api.inspectPath ? [`  GET ${api.inspectPath}   (after the exit: OOMKilled)`] : []),
    ...(api.removePath ? [`  DELETE ${api.removePath}`] : []),
  ];
}

function formatArgv(argv: readonly string[]): string {
  const lines: string[][] = [];
  const last = argv.lastIndexOf('--');
  argv.forEach((word, i) => {
    const option = word.startsWith('--') && word !== '--' && i < last;
    const program = i > 0 && argv[i - 1] === '--' && i - 1 !== last;
    if (i === 0 || option || program || i === last) lines.push([]);
    lines[lines.length - 1]?.push(shellQuote(word));
  });
  return lines.map((words, i) => `${i === 0 ? '  ' : '    '}${words.join(' ')}`).join(' \\\n');
}

function inspection(p: PreparedRun): ReturnType<typeof inspectionSummary> {
  return inspectionSummary(p.resolved.policy, p.egress?.inspect);
}

/** What agentcell says about the decision taken after a run, if any. */
export function afterRunLine(after: AfterRun): string | undefined {
  switch (after.decision) {
    case 'none':
      return undefined;
    case 'live':
      return `agentcell: --restore-on-fail and --accept-on-success need an overlay workspace; ${after.workspaceMode} changes are live`;
    case 'restored':
      return `agentcell: exit ${after.exitCode}: restored, ${after.dropped} change(s) dropped`;
    case 'accepted':
      return `agentcell: accepted ${after.applied} change(s)`;
    case 'not-accepted':
      return `agentcell: not accepted: ${after.reason}`;
  }
}

/** What agentcell says when a bound of `[resources]` ended a run (one place, so every backend's report reads the same). */
export function limitHitLine(outcome: RunOutcome): string | undefined {
  if (outcome.limitHit === undefined) return undefined;
  const detail = outcome.limitDetail ?? `the run hit the ${outcome.limitHit} limit`;
  return outcome.limitHit === 'memory' || outcome.limitHit === 'pids'
    ? `agentcell: ${detail}`
    : `agentcell: stopped the run: ${detail}; exit ${outcome.exitCode}`;
}
