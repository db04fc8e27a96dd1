import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { writeFileAtomic } from '../_internal/atomic-file.js';
import { listReceipts } from '../receipts/receipt-store.js';
import type { Receipt } from '../receipts/receipt.js';
import { readBranchRecord } from './branch-cell.js';
import { IN_CELL_MARKER } from './cell-environment.js';
import { cellDir } from './cell-store.js';

export interface PublishRequest {
  paths: AgentcellPaths;
  cell: string;
  /** Default: origin. */
  remote?: string;
  /** Open a pull request with `gh` (or say the command when gh is not installed). */
  pr: boolean;
  dryRun: boolean;
  hostEnv?: NodeJS.ProcessEnv;
}

export interface PublishReport {
  branch: string;
  remote: string;
  commit: string;
  dryRun: boolean;
  /** The push, as run (or, with dryRun, as it would run), in the host repo. */
  push: string[];
  pushed: boolean;
  /** The pull request's body, from the cell's receipts; written to `prBodyFile` unless dryRun. */
  prBody: string;
  prBodyFile?: string;
  /** `gh pr create …`: run when gh is installed and not dryRun; else for the user to run. */
  prCommand?: string[];
  prUrl?: string;
}

/**
 * Pushes a branch cell's landed branch with the host's git and credentials, and opens a
 * pull request whose body is made from the cell's receipts. Refused inside a cell: a cell
 * has no host credentials, and publishing is the host's decision.
 */
export function publishBranch(request: PublishRequest): PublishReport {
  const hostEnv = request.hostEnv ?? process.env;
  if (hostEnv[IN_CELL_MARKER] !== undefined)
    throw new AgentcellError(
      'PUBLISH_REFUSED',
      `publish runs on the host, never inside a cell (${IN_CELL_MARKER} is set): run it from your own shell`,
    );
  const record = readBranchRecord(request.paths, request.cell);
  if (!record)
    throw new AgentcellError('PUBLISH_REFUSED', `cell ${request.cell} is not a branch cell (agentcell run --branch)`);
  const git = (args: string[]): { ok: boolean; out: string; err: string } => {
    const result = spawnSync('git', ['-C', record.repo, ...args], { encoding: 'utf8', env: hostEnv });
    return { ok: result.status === 0, out: (result.stdout ?? '').trim(), err: (result.stderr ?? '').trim() };
  };
  const tip = git(['rev-parse', '--verify', '--quiet', `refs/heads/${record.branch}`]);
  if (!tip.ok)
    throw new AgentcellError(
      'PUBLISH_REFUSED',
      `branch ${record.branch} is not in ${record.repo} yet: land it first (agentcell accept --cell ${request.cell})`,
    );
  const remote = request.remote ?? 'origin';
  const push = [
    'git',
    '-C',
    record.repo,
    'push',
    '--',
    remote,
    `refs/heads/${record.branch}:refs/heads/${record.branch}`,
  ];
  const receipts = listReceipts(cellDir(request.paths, request.cell));
  const subject = git(['log', '-1', '--format=%s', tip.out]).out;
  const report: PublishReport = {
    branch: record.branch,
    remote,
    commit: tip.out,
    push,
    dryRun: request.dryRun,
    pushed: false,
    prBody: prBody(record.branch, record.base, tip.out, receipts),
  };
  if (request.dryRun) return report;
  const pushed = git(push.slice(3));
  if (!pushed.ok) throw new AgentcellError('PUBLISH_REFUSED', `git push to ${remote} failed: ${pushed.err}`);
  report.pushed = true;
  if (!request.pr) return report;
  const bodyFile = join(cellDir(request.paths, request.cell), 'pr-body.md');
  writeFileAtomic(bodyFile, report.prBody, 0o644);
  report.prBodyFile = bodyFile;
  report.prCommand = ['gh', 'pr', 'create', '--head', record.branch, '--title', subject, '--body-file', bodyFile];
  const gh = spawnSync(report.prCommand[0]!, report.prCommand.slice(1), {
    cwd: record.repo,
    encoding: 'utf8',
    env: hostEnv,
  });
  if (gh.error === undefined && gh.status === 0) report.prUrl = gh.stdout.trim();
  else if (gh.error === undefined)
    throw new AgentcellError('PUBLISH_REFUSED', `pushed; gh pr create failed: ${(gh.stderr ?? '').trim()}`);
  return report;
}

/** Markdown: what ran in the cell, with exit codes, egress counts and assurance, from its signed receipts. */
function prBody(branch: string, base: string, tip: string, receipts: readonly Receipt[]): string {
  const runs = receipts.filter((r) => r.decides === undefined);
  const egress = runs.reduce(
    (sum, r) => ({ allowed: sum.allowed + r.egress.allowed, denied: sum.denied + r.egress.denied }),
    {
      allowed: 0,
      denied: 0,
    },
  );
  const levels = [...new Set(runs.map((r) => `${r.assurance.level} (${r.assurance.mode})`))];
  const lines = [
    `Branch \`${branch}\`: ${base.slice(0, 12)}..${tip.slice(0, 12)}, made in an agentcell cell.`,
    '',
    '| receipt | command | exit | backend |',
    '| --- | --- | --- | --- |',
    ...runs.map(
      (r) =>
        `| ${r.id} | \`${r.command.join(' ').replace(/[|`]/g, ' ')}\` | ${r.exitCode ?? 'none'} | ${r.backend.name} |`,
    ),
    '',
    `Egress: ${egress.allowed} allowed, ${egress.denied} denied.`,
    `Assurance: ${levels.join(', ') || 'no runs'}.`,
    '',
    'Receipts are signed; verify them with `agentcell receipt verify`.',
  ];
  return `${lines.join('\n')}\n`;
}
