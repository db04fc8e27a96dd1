import type { Command } from 'commander';
import { agentcellPaths } from '../../paths.js';
import { superviseSession } from '../../sessions/session-supervisor.js';
import type { CliContext } from '../output.js';

/**
 * `session supervise DIR` (hidden): what a session's supervisor runs for the session's life.
 * A module of its own so the supervisor loads only it (see buildProgram), not the other
 * session commands and what they render with.
 */
export function registerSuperviseCommand(session: Command, ctx: CliContext): void {
  session
    .command('supervise', { hidden: true })
    .argument('<dir>')
    .action(async (dir: string) => {
      ctx.setExit(await superviseSession(dir, agentcellPaths(), process.env));
      // Anything still open (a client that never hangs up) must not keep a finished session alive.
      setTimeout(() => process.exit(), 2000).unref();
    });
}
