import type { Command } from 'commander';
import { locateExistingCell } from '../../cell/cell-store.js';
import { publishBranch } from '../../cell/publish.js';
import { agentcellPaths } from '../../paths.js';
import { note, print, printJson, type DryRunFlag, type JsonFlag } from '../output.js';

type PublishFlags = JsonFlag & DryRunFlag & { cell?: string; workspace?: string; remote?: string; pr?: boolean };

/** `publish`: push a branch cell's landed branch from the host, and open a pull request. */
export function registerPublishCommands(program: Command): void {
  program
    .command('publish')
    .description(
      'push a branch cell’s landed branch with the host’s git; --pr opens a pull request (never from a cell)',
    )
    .option('--cell <name>', 'the branch cell (default: the workspace’s own)')
    .option('--workspace <dir>', 'workspace directory (default: the current directory)')
    .option('--remote <name>', 'the remote to push to', 'origin')
    .option('--pr', 'open a pull request with gh, its body made from the cell’s receipts')
    .option('--dry-run', 'show the push and the pull request body; change nothing')
    .option('--json', 'machine-readable output')
    .action((flags: PublishFlags) => {
      const paths = agentcellPaths();
      const { cell } = locateExistingCell(paths, flags);
      const report = publishBranch({
        paths,
        cell,
        ...(flags.remote !== undefined ? { remote: flags.remote } : {}),
        pr: Boolean(flags.pr),
        dryRun: Boolean(flags.dryRun),
      });
      if (flags.json) return printJson(report);
      print(`${report.dryRun ? 'would run' : 'ran'}: ${report.push.join(' ')}`);
      if (flags.dryRun || flags.pr) print(report.prBody);
      if (report.prUrl !== undefined) note(`pull request: ${report.prUrl}`);
      else if (report.prCommand !== undefined)
        note(`gh is not installed; open the pull request with:\n  ${report.prCommand.join(' ')}`);
      else note(report.pushed ? `pushed ${report.branch} (${report.commit.slice(0, 12)}) to ${report.remote}` : '');
    });
}
