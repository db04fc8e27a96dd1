import type { Command } from 'commander';
import { isatty } from 'node:tty';
import { AGENT_NAMES } from '../../agents/agent-adapter.js';
import { prepareLogin, runLogin } from '../../run/agent-login.js';
import { agentcellPaths } from '../../paths.js';
import { note, print, printJson, type CliContext, type DryRunFlag, type JsonFlag } from '../output.js';
import { dryRunJson, dryRunText } from '../render.js';

interface LoginFlags extends JsonFlag, DryRunFlag {
  workspace?: string;
  mode?: string;
  timeout?: string;
}

/** `agentcell login AGENT`: the agent's own login in a cell; the credential goes to agentcell's store. */
export function registerAgentCommands(program: Command, ctx: CliContext): void {
  program
    .command('login')
    .description(
      `run an agent's own login in a cell and keep the credential in agentcell's store (${AGENT_NAMES.join(', ')})`,
    )
    .argument('<agent>', 'the agent')
    .argument('[args...]', "arguments replacing the login command's own (after --)")
    .option('--workspace <dir>', 'workspace whose policy applies (default: the current directory)')
    .option('--mode <mode>', 'assurance mode')
    .option('--timeout <duration>', 'give up after this long (default: none)')
    .option('--dry-run', 'print the exact plan and change nothing')
    .option('--json', 'machine-readable output')
    .action(async (agent: string, args: string[], flags: LoginFlags) => {
      const paths = agentcellPaths();
      const login = await prepareLogin({
        agent,
        args,
        paths,
        tty: isatty(0),
        ...(flags.workspace !== undefined ? { workspace: flags.workspace } : {}),
        ...(flags.mode !== undefined ? { mode: flags.mode } : {}),
        ...(flags.timeout !== undefined ? { timeout: flags.timeout } : {}),
      });
      if (flags.dryRun) {
        if (flags.json) printJson({ ...dryRunJson(login.prepared), store: login.store, files: login.files });
        else
          print(
            `${dryRunText(login.prepared)}\nwould keep: ${login.files.map((f) => `~/${f}`).join(', ')} in ${login.store}`,
          );
        return;
      }
      const { exitCode, stored } = await runLogin(login, paths, note);
      if (flags.json) printJson({ agent: login.agent, exitCode, stored });
      else if (exitCode === 0) note(`agentcell: ${login.agent} login kept in ${stored.join(', ')}`);
      else note(`agentcell: ${login.agent} login exited ${exitCode}; nothing was stored`);
      ctx.setExit(exitCode);
    });
}
