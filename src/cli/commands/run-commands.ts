import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { isatty } from 'node:tty';
import { prepareRun } from '../../cell/prepare-run.js';
import { runPrepared } from '../../cell/run-cell.js';
import { agentcellPaths } from '../../paths.js';
import { addCellOptions, toCellOptions, type CellFlags } from '../cell-options.js';
import { note, print, printJson, type CliContext, type DryRunFlag, type JsonFlag } from '../output.js';
import { bannerLine, dryRunJson, dryRunText, runSummary } from '../render.js';

type RunFlags = CellFlags & JsonFlag & DryRunFlag;

async function runCommand(ctx: CliContext, argv: string[], flags: RunFlags): Promise<number> {
  ctx.timer.mark('cli');
  const prepared = await prepareRun({
    timer: ctx.timer,
    ...toCellOptions(flags),
    argv,
    tty: isatty(0),
    paths: agentcellPaths(),
  });
  if (flags.dryRun) {
    if (flags.json) printJson(dryRunJson(prepared));
    else print(dryRunText(prepared));
    return 0;
  }
  note(flags.json ? JSON.stringify({ event: 'start', ...runSummary(prepared) }) : bannerLine(prepared));
  const outcome = await runPrepared(prepared);
  if (flags.json) note(JSON.stringify({ event: 'exit', cell: prepared.cell, ...outcome, timings: ctx.timer.timings }));
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
    .option('--json', 'machine-readable output (start and exit events on stderr)')
    .action(async (argv: string[], flags: RunFlags) => ctx.setExit(await runCommand(ctx, argv, flags)));

  addCellOptions(program.command('shell').description('interactive shell in the cell'))
    .option('--dry-run', 'print the exact plan and change nothing')
    .option('--json', 'machine-readable output')
    .action(async (flags: RunFlags) =>
      ctx.setExit(await runCommand(ctx, [existsSync('/bin/bash') ? '/bin/bash' : '/bin/sh', '-l'], flags)),
    );
}
