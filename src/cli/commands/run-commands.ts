import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { isatty } from 'node:tty';
import { openBranchCell } from '../../cell/branch-cell.js';
import { decideAfterRun } from '../../run/decide-after-run.js';
import { prepareRun } from '../../run/prepare-run.js';
import { AgentcellError } from '../../errors.js';
import { runPrepared } from '../../run/run-cell.js';
import { AGENT_NAMES } from '../../agents/agent-adapter.js';
import { readyAgent, settleAgentLogins } from '../../agents/prepare-agent.js';
import { agentcellPaths } from '../../paths.js';
import { addCellOptions, toCellOptions, type CellFlags } from '../cell-options.js';
import { note, print, printJson, type CliContext, type DryRunFlag, type JsonFlag } from '../output.js';
import { afterRunLine, bannerLine, dryRunJson, dryRunText, limitHitLine, runSummary } from '../render.js';

type RunFlags = CellFlags & JsonFlag & DryRunFlag & { restoreOnFail?: boolean; acceptOnSuccess?: boolean };

async function runCommand(ctx: CliContext, argv: string[], flags: RunFlags): Promise<number> {
  ctx.timer.mark('cli');
  const paths = agentcellPaths();
  const options = toCellOptions(flags);
  if (flags.branch !== undefined) {
    const branched = openBranchCell({
      paths,
      workspace: resolve(flags.workspace ?? '.'),
      branch: flags.branch,
      ...(flags.from !== undefined ? { from: flags.from } : {}),
      ...(flags.cell !== undefined ? { cell: flags.cell } : {}),
      dryRun: Boolean(flags.dryRun),
    });
    if (flags.dryRun && branched.created) {
      if (flags.json) printJson({ branchCell: branched.cell, wouldCreate: branched.record });
      else
        print(
          `would check out ${branched.record.from} (${branched.record.base.slice(0, 12)}) of ${branched.record.repo} into ${branched.record.checkout} as branch ${branched.record.branch}, for cell ${branched.cell}; the run's plan follows once it exists`,
        );
      return 0;
    }
    options.workspace = branched.record.checkout;
    options.cell = branched.cell;
  }
  const prepared = await prepareRun({
    timer: ctx.timer,
    ...options,
    argv,
    tty: isatty(0),
    paths,
  });
  if (flags.dryRun) {
    if (flags.json) printJson(dryRunJson(prepared));
    else print(dryRunText(prepared));
    return 0;
  }
  if (prepared.agent) {
    await readyAgent(prepared.agent, note);
    prepared.timer.mark('agent');
  }
  const credentialHint = prepared.agent?.credentialHint;
  if (credentialHint && !flags.json) note(`agentcell: ${credentialHint}`);
  const { outcome, receipt } = await runPrepared(prepared, paths, () =>
    note(flags.json ? JSON.stringify({ event: 'start', ...runSummary(prepared) }) : bannerLine(prepared)),
  ).finally(() => prepared.agent && settleAgentLogins(prepared.agent));
  prepared.timer.mark('receipt'); // signing and writing it: after the receipt's own timings
  const after = await decideAfterRun(prepared, paths, receipt, {
    restoreOnFail: flags.restoreOnFail,
    acceptOnSuccess: flags.acceptOnSuccess,
    command: ['agentcell', ...process.argv.slice(2)],
  });
  const afterLine = afterRunLine(after);
  if (afterLine !== undefined) note(afterLine);
  if (flags.json)
    note(
      JSON.stringify({
        event: 'exit',
        cell: prepared.cell,
        receipt: receipt.id,
        ...outcome,
        ...(outcome.limitHit ? { message: limitHitLine(outcome) } : {}),
        ...(credentialHint ? { credentialHint } : {}),
        timings: { ...prepared.timer.timings },
      }),
    );
  else if (outcome.limitHit && outcome.limitHit !== 'timeout') note(limitHitLine(outcome) ?? '');
  else if (credentialHint && outcome.exitCode !== 0)
    note(`agentcell: ${prepared.agent?.name ?? 'the agent'} exited ${outcome.exitCode}; ${credentialHint}`);
  else if (outcome.timedOut)
    note(`agentcell: timed out after ${prepared.resolved.policy.resources.timeout ?? ''}; exit ${outcome.exitCode}`);
  return outcome.exitCode;
}

export function registerRunCommands(program: Command, ctx: CliContext): void {
  addCellOptions(
    program
      .command('run')
      .description('run COMMAND in the cell; exits with its exit code')
      .argument('<command...>', 'the command and its arguments (put them after --)')
      .passThroughOptions(),
  )
    .option('--dry-run', 'print the exact plan and change nothing')
    .option('--restore-on-fail', 'drop the run’s changes when the command fails')
    .option('--accept-on-success', 'apply the cell’s changes to the workspace when the command succeeds')
    .option('--json', 'machine-readable output (start and exit events on stderr)')
    .action(async (argv: string[], flags: RunFlags) => ctx.setExit(await runCommand(ctx, argv, flags)));

  addCellOptions(program.command('shell').description('interactive shell in the cell'))
    .option('--dry-run', 'print the exact plan and change nothing')
    .option('--json', 'machine-readable output')
    .action(async (flags: RunFlags) => {
      if (flags.agent !== undefined)
        throw new AgentcellError(
          'USAGE',
          `shell --agent: use agentcell ${flags.agent} (or run --agent) to run an agent`,
        );
      ctx.setExit(await runCommand(ctx, [existsSync('/bin/bash') ? '/bin/bash' : '/bin/sh', '-l'], flags));
    });

  // `agentcell claude ARGS…` is `agentcell run --agent claude -- ARGS…`; unknown options are the agent's.
  for (const name of AGENT_NAMES)
    addCellOptions(
      program
        .command(name)
        .description(`run ${name} in the cell through its adapter (its options pass through; -- ends ours)`)
        .argument('[args...]', `arguments for ${name}`)
        .allowUnknownOption()
        .passThroughOptions(),
    )
      .option('--dry-run', 'print the exact plan and change nothing')
      .option('--restore-on-fail', 'drop the run’s changes when the agent fails')
      .option('--accept-on-success', 'apply the cell’s changes to the workspace when the agent succeeds')
      .option('--json', 'machine-readable output (start and exit events on stderr)')
      .action(async (args: string[], flags: RunFlags) =>
        ctx.setExit(await runCommand(ctx, args, { ...flags, agent: name })),
      );
}
