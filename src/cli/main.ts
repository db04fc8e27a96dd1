import { Command, CommanderError } from 'commander';
import { existsSync, writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { AgentcellError } from '../errors.js';
import { agentcellPaths } from '../paths.js';
import { PhaseTimer } from '../cell/phase-timer.js';
import { prepareRun, resolveCellPolicy } from '../cell/prepare-run.js';
import { runPrepared } from '../cell/run-cell.js';
import { explainPolicy } from '../policy/explain-policy.js';
import type { ResolvedPolicy } from '../policy/resolve-policy.js';
import { runDoctor } from '../evidence/doctor.js';
import { writeInitFile } from '../policy/init-profiles.js';
import { addCellOptions, toCellOptions, type CellFlags } from './cell-options.js';
import { bannerLine, dryRunJson, dryRunText, runSummary } from './render.js';

interface JsonFlag {
  json?: boolean;
}

// Started before anything else so the phases add up to the whole run.
const timer = new PhaseTimer();
const print = (text: string): void => void process.stdout.write(`${text}\n`);
const printJson = (value: unknown): void => print(JSON.stringify(value, null, 2));
// Short notes go straight to fd 2: creating process.stderr costs a few ms of every run's start.
const note = (text: string): void => void writeSync(2, `${text}\n`);

async function runCommand(argv: string[], flags: CellFlags & JsonFlag & { dryRun?: boolean }): Promise<number> {
  timer.mark('cli');
  const prepared = await prepareRun({
    timer,
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
  if (flags.json) note(JSON.stringify({ event: 'exit', cell: prepared.cell, ...outcome, timings: timer.timings }));
  else if (outcome.timedOut)
    note(`agentcell: timed out after ${prepared.resolved.policy.resources.timeout ?? ''}; exit ${outcome.exitCode}`);
  return outcome.exitCode;
}

async function policyFor(flags: CellFlags): Promise<ResolvedPolicy> {
  return (await resolveCellPolicy(toCellOptions(flags), agentcellPaths())).resolved;
}

export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('agentcell')
    .description('Run AI coding agents in a bounded local cell.')
    .version('0.1.0')
    .enablePositionalOptions()
    .showHelpAfterError('(run agentcell help for usage)')
    .exitOverride();

  addCellOptions(
    program
      .command('run')
      .description('run COMMAND in the cell; exits with its exit code')
      .argument('<command...>', 'the command and its arguments (put them after --)')
      .passThroughOptions(),
  )
    .option('--dry-run', 'print the exact plan and change nothing')
    .option('--json', 'machine-readable output (start and exit events on stderr)')
    .action(async (argv: string[], flags: CellFlags & JsonFlag & { dryRun?: boolean }) =>
      setExit(await runCommand(argv, flags)),
    );

  addCellOptions(program.command('shell').description('interactive shell in the cell'))
    .option('--dry-run', 'print the exact plan and change nothing')
    .option('--json', 'machine-readable output')
    .action(async (flags: CellFlags & JsonFlag & { dryRun?: boolean }) =>
      setExit(await runCommand([existsSync('/bin/bash') ? '/bin/bash' : '/bin/sh', '-l'], flags)),
    );

  const policy = program.command('policy').description('the merged policy, its errors, where a value came from');
  addCellOptions(policy.command('show').description('the effective policy and its hash'))
    .option('--json', 'machine-readable output')
    .action(async (flags: CellFlags & JsonFlag) => {
      const resolved = await policyFor(flags);
      if (flags.json) printJson({ hash: resolved.hash, files: resolved.files, policy: resolved.policy });
      else {
        print(`# policy ${resolved.hash}`);
        print(`# from: built-in${resolved.files.map((f) => `, ${f}`).join('')}`);
        printJson(resolved.policy);
      }
    });
  policy
    .command('validate')
    .description('check a policy file (default: the merged policy of the workspace)')
    .argument('[file]', 'a policy file to check on its own')
    .option('--workspace <dir>', 'workspace directory')
    .option('--json', 'machine-readable output')
    .action(async (file: string | undefined, flags: { workspace?: string } & JsonFlag) => {
      let files: string[];
      if (file !== undefined) {
        (await import('../policy/policy-layer.js')).readPolicyFile(file);
        files = [file];
      } else {
        files = (await policyFor({ allow: [], env: [], ...flags })).files;
      }
      if (flags.json) printJson({ valid: true, files });
      else print(`valid: ${files.length ? files.join(', ') : 'built-in defaults only'}`);
    });
  addCellOptions(policy.command('explain').description('where each effective value came from').argument('[key]'))
    .option('--json', 'machine-readable output')
    .action(async (key: string | undefined, flags: CellFlags & JsonFlag) => {
      const rows = explainPolicy(await policyFor(flags), key);
      if (key !== undefined && rows.length === 0)
        throw new AgentcellError('USAGE', `no policy key "${key}" (try: agentcell policy explain)`);
      if (flags.json) printJson(rows);
      else for (const r of rows) print(`${r.key} = ${JSON.stringify(r.value)}    # ${r.from.join(' + ')}`);
    });

  program
    .command('doctor')
    .description('check this host (read-only)')
    .option('--json', 'machine-readable output')
    .action(async (flags: JsonFlag) => {
      const report = await runDoctor();
      if (flags.json) printJson(report);
      else
        for (const c of report.checks) {
          print(`${c.ok ? 'ok  ' : c.required ? 'FAIL' : 'warn'} ${c.name}: ${c.detail}`);
          if (!c.ok && c.fix) print(`     fix: ${c.fix}`);
        }
      setExit(report.ok ? 0 : 3);
    });

  program
    .command('init')
    .description('write a commented agentcell.toml for this workspace')
    .option('--profile <name>', 'strict, development, node or python', 'development')
    .option('--workspace <dir>', 'workspace directory')
    .option('--force', 'overwrite an existing agentcell.toml')
    .option('--dry-run', 'print the file instead of writing it')
    .option('--json', 'machine-readable output')
    .action((flags: { profile: string; workspace?: string; force?: boolean; dryRun?: boolean } & JsonFlag) => {
      const result = writeInitFile(flags.workspace ?? process.cwd(), {
        profile: flags.profile,
        force: Boolean(flags.force),
        dryRun: Boolean(flags.dryRun),
      });
      if (flags.json) printJson(result);
      else if (flags.dryRun) print(result.content);
      else note(`wrote ${result.path} (profile ${result.profile})`);
    });
  return program;
}

async function main(): Promise<void> {
  const json = jsonRequested(process.argv.slice(2));
  let code = 0;
  try {
    await buildProgram((c) => (code = c)).parseAsync(process.argv);
  } catch (error) {
    code = report(error, json);
  }
  process.exitCode = code;
}

/** `--json` before any `--`, so a command's own --json is not mistaken for ours. */
function jsonRequested(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).includes('--json');
}

function report(error: unknown, json: boolean): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0)
      return 0;
    if (json) printJson({ error: { code: 'USAGE', message: error.message } });
    return 2;
  }
  if (error instanceof AgentcellError) {
    if (json) printJson(error.toJSON());
    else note(`agentcell: ${error.message}`);
    return error.exitCode;
  }
  const internal = new AgentcellError('INTERNAL', `unexpected failure: ${(error as Error).stack ?? String(error)}`);
  if (json) printJson(internal.toJSON());
  else note(`agentcell: ${internal.message}`);
  return internal.exitCode;
}

void main();
