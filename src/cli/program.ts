import { Command } from 'commander';
import { AGENT_NAMES } from '../agents/agent-adapter.js';
import { AGENTCELL_VERSION } from '../version.js';
import { registerRunCommands } from './commands/run-commands.js';
import { EXAMPLE_WORKFLOW } from './example-workflow.js';
import type { CliContext } from './output.js';

/**
 * The commands `registerRunCommands` defines that start a cell: on every agent's critical path,
 * so their command line is parsed with only that module loaded (each other module is imported,
 * and its schemas built, only when a command of its runs; see buildProgram).
 */
const CELL_COMMANDS: ReadonlySet<string> = new Set(['run', 'shell', ...AGENT_NAMES]);

/**
 * The whole command line: every command module registered on one commander program, in
 * help order. With `argv` naming a cell command (`run`, `shell`, an agent), only the module
 * that defines it: the same command, parsed the same way, without loading the rest.
 */
export async function buildProgram(ctx: CliContext, argv: readonly string[] = []): Promise<Command> {
  const program = new Command('agentcell')
    .description('Run AI coding agents in a bounded local cell.')
    .version(AGENTCELL_VERSION)
    .enablePositionalOptions()
    .showHelpAfterError('(run agentcell help for usage)')
    .addHelpText('before', EXAMPLE_WORKFLOW)
    .exitOverride();
  registerRunCommands(program, ctx);
  if (CELL_COMMANDS.has(argv[2] ?? '')) return program;
  if (argv[2] === 'session' && argv[3] === 'supervise') {
    // A session's supervisor idles for the session's life: every module it runs stays resident.
    const { registerSuperviseCommand } = await import('./commands/supervise-command.js');
    registerSuperviseCommand(program.command('session'), ctx);
    return program;
  }
  const [
    agent,
    policy,
    transaction,
    compare,
    publish,
    receipt,
    cell,
    host,
    spy,
    egress,
    image,
    shell,
    evidence,
    session,
    ui,
  ] = await Promise.all([
    import('./commands/agent-commands.js'),
    import('./commands/policy-commands.js'),
    import('./commands/transaction-commands.js'),
    import('./commands/compare-commands.js'),
    import('./commands/publish-commands.js'),
    import('./commands/receipt-commands.js'),
    import('./commands/cell-commands.js'),
    import('./commands/host-commands.js'),
    import('./commands/spy-commands.js'),
    import('./commands/egress-commands.js'),
    import('./commands/image-commands.js'),
    import('./commands/shell-commands.js'),
    import('./commands/evidence-commands.js'),
    import('./commands/session-commands.js'),
    import('./commands/ui-commands.js'),
  ]);
  agent.registerAgentCommands(program, ctx);
  policy.registerPolicyCommands(program);
  transaction.registerTransactionCommands(program);
  compare.registerCompareCommands(program);
  publish.registerPublishCommands(program);
  receipt.registerReceiptCommands(program, ctx.setExit);
  cell.registerCellCommands(program);
  host.registerHostCommands(program, ctx);
  spy.registerSpyCommands(program);
  egress.registerEgressCommands(program, ctx.setExit);
  image.registerImageCommands(program);
  shell.registerShellCommands(program);
  evidence.registerEvidenceCommands(program, ctx.setExit);
  session.registerSessionCommands(program, ctx);
  ui.registerUiCommands(program);
  return program;
}
