import type { Command } from 'commander';
import { isatty } from 'node:tty';
import { AGENT_NAMES } from '../../agents/agent-adapter.js';
import { prepareLogin, runLogin } from '../../run/agent-login.js';
import { loginStatus, logout, type LoginSource } from '../../agents/login-status.js';
import { resolveCellPolicy } from '../../run/run-policy.js';
import { cellsDir } from '../../cell/cell-store.js';
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
  const login = program
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

  login
    .command('status')
    .description('which agents can authenticate, and from where (stored login, host key, policy secret); never a value')
    .option('--workspace <dir>', 'also count the [secrets] of this workspace policy (default: the current directory)')
    .option('--json', 'machine-readable output')
    .action(async (flags: JsonFlag & { workspace?: string }) => {
      const paths = agentcellPaths();
      const { resolved } = await resolveCellPolicy(
        flags.workspace !== undefined ? { workspace: flags.workspace } : {},
        paths,
      );
      const rows = loginStatus(paths.config, process.env, resolved.policy);
      if (flags.json) return printJson(rows);
      for (const r of rows) {
        const from = r.sources.map(describeSource);
        print(`${r.agent.padEnd(9)}${r.ready ? from.join('; ') : `none (${r.hint ?? ''})`}`);
      }
    });

  program
    .command('logout')
    .description("forget an agent's stored login (the store and the copies in cells' agent homes)")
    .argument('<agent>', 'the agent')
    .option('--dry-run', 'list what would be deleted; delete nothing')
    .option('--json', 'machine-readable output')
    .action((agent: string, flags: JsonFlag & DryRunFlag) => {
      const paths = agentcellPaths();
      const result = logout(paths.config, cellsDir(paths), agent, { dryRun: flags.dryRun === true });
      if (flags.json) return printJson({ ...result, dryRun: flags.dryRun === true });
      if (result.removed.length === 0) note(`agentcell: ${result.agent} has no stored login`);
      for (const file of result.removed) note(`${flags.dryRun ? 'would delete' : 'deleted'} ${file}`);
    });
}

function describeSource(source: LoginSource): string {
  switch (source.kind) {
    case 'stored-login':
      return `stored login ${source.path} (updated ${source.updatedAt})`;
    case 'host-variable':
      return `$${source.variable}, injected by the gateway as ${source.injectedAs} for ${source.host}`;
    case 'policy-secret':
      return `[secrets.${source.secret}] from ${source.from}, inject = "${source.inject}"`;
  }
}
