import type { Command } from 'commander';
import { runDoctor } from '../../evidence/doctor.js';
import { writeInitFile } from '../../policy/init-profiles.js';
import { note, print, printJson, type CliContext, type JsonFlag } from '../output.js';
import { probeEnforcement } from '../enforcement-probe.js';
import { enforcementText } from '../render-evidence.js';
import { agentcellPaths } from '../../paths.js';

export function registerHostCommands(program: Command, ctx: CliContext): void {
  program
    .command('doctor')
    .description('check this host (read-only)')
    .option('--json', 'machine-readable output')
    .option('--probe', "also run the enforcement canaries in this workspace's cell (a run of `true`, receipted)")
    .action(async (flags: JsonFlag & { probe?: boolean }) => {
      const report = await runDoctor();
      const enforcement = flags.probe ? await probeEnforcement(agentcellPaths()) : undefined;
      if (flags.json) printJson(enforcement ? { ...report, enforcement } : report);
      else {
        for (const c of report.checks) {
          print(`${c.ok ? 'ok  ' : c.required ? 'FAIL' : 'warn'} ${c.name}: ${c.detail}`);
          if (!c.ok && c.fix) print(`     fix: ${c.fix}`);
        }
        if (enforcement) print(enforcementText(enforcement));
      }
      ctx.setExit(report.ok && (enforcement?.held ?? true) ? 0 : 3);
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
}
