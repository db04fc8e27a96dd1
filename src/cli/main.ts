import { Command, CommanderError } from 'commander';
import { PhaseTimer } from '../cell/phase-timer.js';
import { AgentcellError, pathErrorOf } from '../errors.js';
import { closeInheritedFds } from '../_internal/inherited-fds.js';
import { agentcellPaths } from '../paths.js';
import { AGENTCELL_VERSION } from '../version.js';
import { registerCellCommands } from './commands/cell-commands.js';
import { registerEgressCommands } from './commands/egress-commands.js';
import { registerHostCommands } from './commands/host-commands.js';
import { registerImageCommands } from './commands/image-commands.js';
import { registerReceiptCommands } from './commands/receipt-commands.js';
import { registerTransactionCommands } from './commands/transaction-commands.js';
import { registerPolicyCommands } from './commands/policy-commands.js';
import { registerRunCommands } from './commands/run-commands.js';
import { registerAgentCommands } from './commands/agent-commands.js';
import { registerSpyCommands } from './commands/spy-commands.js';
import { registerEvidenceCommands } from './commands/evidence-commands.js';
import { note, printJson, type CliContext } from './output.js';

// Started before anything else so the phases add up to the whole run.
const timer = new PhaseTimer();

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('agentcell')
    .description('Run AI coding agents in a bounded local cell.')
    .version(AGENTCELL_VERSION)
    .enablePositionalOptions()
    .showHelpAfterError('(run agentcell help for usage)')
    .exitOverride();
  registerRunCommands(program, ctx);
  registerAgentCommands(program, ctx);
  registerPolicyCommands(program);
  registerTransactionCommands(program);
  registerReceiptCommands(program, ctx.setExit);
  registerCellCommands(program);
  registerHostCommands(program, ctx);
  registerSpyCommands(program);
  registerEgressCommands(program, ctx.setExit);
  registerImageCommands(program);
  registerEvidenceCommands(program, ctx.setExit);
  return program;
}

async function main(): Promise<void> {
  closeInheritedFds(); // before anything is spawned (DESIGN.md invariant 10)
  const json = jsonRequested(process.argv.slice(2));
  let code = 0;
  try {
    await buildProgram({ timer, setExit: (c) => (code = c) }).parseAsync(process.argv);
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
  const failure = pathErrorOf(error, stateHint(error)) ?? error;
  if (failure instanceof AgentcellError) {
    if (json) printJson(failure.toJSON());
    else note(`agentcell: ${failure.message}`);
    return failure.exitCode;
  }
  const internal = new AgentcellError('INTERNAL', `unexpected failure: ${(error as Error).stack ?? String(error)}`);
  if (json) printJson(internal.toJSON());
  else note(`agentcell: ${internal.message}`);
  return internal.exitCode;
}

void main();

/** Where to look when a path under agentcell's own state or config fails. */
function stateHint(error: unknown): string {
  const path = (error as NodeJS.ErrnoException).path ?? '';
  const { state, config } = agentcellPaths();
  if (!path.startsWith(state) && !path.startsWith(config)) return '';
  return `: agentcell keeps its state in ${state} and config in ${config}; if AGENTCELL_HOME, XDG_STATE_HOME or XDG_CONFIG_HOME is set, point it at a writable directory`;
}
