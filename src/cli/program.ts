import { Command } from 'commander';
import { AGENTCELL_VERSION } from '../version.js';
import { registerCellCommands } from './commands/cell-commands.js';
import { registerEgressCommands } from './commands/egress-commands.js';
import { registerHostCommands } from './commands/host-commands.js';
import { registerImageCommands } from './commands/image-commands.js';
import { registerReceiptCommands } from './commands/receipt-commands.js';
import { registerTransactionCommands } from './commands/transaction-commands.js';
import { registerCompareCommands } from './commands/compare-commands.js';
import { registerPolicyCommands } from './commands/policy-commands.js';
import { registerRunCommands } from './commands/run-commands.js';
import { registerAgentCommands } from './commands/agent-commands.js';
import { registerSpyCommands } from './commands/spy-commands.js';
import { registerShellCommands } from './commands/shell-commands.js';
import { registerEvidenceCommands } from './commands/evidence-commands.js';
import { registerSessionCommands } from './commands/session-commands.js';
import { registerUiCommands } from './commands/ui-commands.js';
import { registerPublishCommands } from './commands/publish-commands.js';
import { EXAMPLE_WORKFLOW } from './example-workflow.js';
import type { CliContext } from './output.js';

/** The whole command line: every command module registered on one commander program. */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command('agentcell')
    .description('Run AI coding agents in a bounded local cell.')
    .version(AGENTCELL_VERSION)
    .enablePositionalOptions()
    .showHelpAfterError('(run agentcell help for usage)')
    .addHelpText('before', EXAMPLE_WORKFLOW)
    .exitOverride();
  registerRunCommands(program, ctx);
  registerAgentCommands(program, ctx);
  registerPolicyCommands(program);
  registerTransactionCommands(program);
  registerCompareCommands(program);
  registerPublishCommands(program);
  registerReceiptCommands(program, ctx.setExit);
  registerCellCommands(program);
  registerHostCommands(program, ctx);
  registerSpyCommands(program);
  registerEgressCommands(program, ctx.setExit);
  registerImageCommands(program);
  registerShellCommands(program);
  registerEvidenceCommands(program, ctx.setExit);
  registerSessionCommands(program, ctx);
  registerUiCommands(program);
  return program;
}
