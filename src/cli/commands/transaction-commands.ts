import type { Command } from 'commander';
import {
  acceptCell,
  cellDiff,
  checkpointCell,
  forkCell,
  restoreCell,
  type CellRef,
} from '../../cell/cell-decisions.js';
import { checkCellName } from '../../cell/cell-name.js';
import { locateExistingCell } from '../../cell/cell-store.js';
import { resolveCellPolicy } from '../../cell/prepare-run.js';
import { agentcellPaths } from '../../paths.js';
import { note, print, printJson, type DryRunFlag, type JsonFlag } from '../output.js';

interface CellFlag {
  cell?: string;
  workspace?: string;
}

function cellRef(flags: CellFlag): CellRef {
  const paths = agentcellPaths();
  return { paths, ...locateExistingCell(paths, flags), command: ['agentcell', ...process.argv.slice(2)] };
}

function withCellFlags(command: Command): Command {
  return command
    .option('--cell <name>', 'cell (default: the workspace’s own)')
    .option('--workspace <dir>', 'workspace directory (default: the current directory)')
    .option('--json', 'machine-readable output');
}

const SYMBOL = { added: 'A', modified: 'M', deleted: 'D' } as const;

/** `diff`, `accept`, `restore`, `checkpoint`, `fork`: review and decide what a cell changed. */
export function registerTransactionCommands(program: Command): void {
  withCellFlags(program.command('diff').description('what the cell changed that is not yet in the workspace')).action(
    async (flags: CellFlag & JsonFlag) => {
      const changes = await cellDiff(cellRef(flags));
      if (flags.json) return printJson(changes);
      if (changes.length === 0) return note('no pending changes');
      for (const c of changes)
        print(`${SYMBOL[c.change]} ${c.path}${c.kind === 'dir' ? '/' : ''}${c.flagged ? `    ! ${c.flagged}` : ''}`);
    },
  );

  withCellFlags(program.command('accept').description('apply the cell’s changes to the workspace'))
    .option('--force', 'also apply control-plane changes and a failed run’s changes')
    .option('--dry-run', 'say what would be applied; change nothing')
    .action(async (flags: CellFlag & JsonFlag & DryRunFlag & { force?: boolean }) => {
      const report = await acceptCell(cellRef(flags), { force: Boolean(flags.force), dryRun: Boolean(flags.dryRun) });
      if (flags.json) return printJson(report);
      for (const c of report.applied) print(`${SYMBOL[c.change]} ${c.path}`);
      for (const r of report.refused) note(`skipped ${r.path}: ${r.reason}`);
      note(
        `${report.dryRun ? 'would apply' : 'applied'} ${report.applied.length} change(s)` +
          (report.receipt ? `; receipt ${report.receipt.id}` : ''),
      );
    });

  withCellFlags(program.command('restore').description('drop the cell’s changes (all, or those after a checkpoint)'))
    .option('--to <checkpoint>', 'keep the layers up to this checkpoint (id, name or number)')
    .option('--dry-run', 'say what would be dropped; change nothing')
    .action(async (flags: CellFlag & JsonFlag & DryRunFlag & { to?: string }) => {
      const report = await restoreCell(cellRef(flags), {
        dryRun: Boolean(flags.dryRun),
        ...(flags.to !== undefined ? { to: flags.to } : {}),
      });
      if (flags.json) return printJson(report);
      note(
        `${report.dryRun ? 'would drop' : 'dropped'} ${report.changes.length} change(s) in ${report.dropped.length} layer(s)` +
          (report.receipt ? `; receipt ${report.receipt.id}` : ''),
      );
    });

  withCellFlags(program.command('checkpoint').description('freeze the cell’s changes so far as a checkpoint'))
    .option('--name <label>', 'a name to restore to later')
    .option('--dry-run', 'change nothing')
    .action(async (flags: CellFlag & JsonFlag & DryRunFlag & { name?: string }) => {
      const ref = cellRef(flags);
      const { resolved } = await resolveCellPolicy({ workspace: ref.workspace }, ref.paths);
      const report = await checkpointCell(ref, {
        policyHash: resolved.hash,
        dryRun: Boolean(flags.dryRun),
        ...(flags.name !== undefined ? { name: flags.name } : {}),
      });
      if (flags.json) return printJson(report);
      note(
        report.layer ? `checkpoint ${report.layer.name ?? report.layer.id} (#${report.layer.seq})` : 'would checkpoint',
      );
    });

  withCellFlags(program.command('fork').description('copy this cell’s changes into a new cell').argument('<new-cell>'))
    .option('--dry-run', 'change nothing')
    .action(async (newCell: string, flags: CellFlag & JsonFlag & DryRunFlag) => {
      const report = await forkCell(cellRef(flags), checkCellName(newCell), { dryRun: Boolean(flags.dryRun) });
      if (flags.json) return printJson(report);
      note(`${report.dryRun ? 'would fork' : 'forked'} into ${report.cell} (${report.layers} layer(s))`);
    });
}
