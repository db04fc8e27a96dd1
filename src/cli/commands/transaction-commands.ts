import type { Command } from 'commander';
import {
  acceptCell,
  cellDiff,
  cellPatch,
  checkpointCell,
  forkCell,
  forkCells,
  forkNames,
  MAX_FORKS,
  restoreCell,
  type CellRef,
} from '../../cell/cell-decisions.js';
import { checkCellName } from '../../cell/cell-name.js';
import { landCell } from '../../cell/land-cell.js';
import { cellDir, locateExistingCell } from '../../cell/cell-store.js';
import { unreceiptedRuns } from '../../receipts/run-journal.js';
import { resolveCellPolicy } from '../../run/run-policy.js';
import { agentcellPaths } from '../../paths.js';
import { matchesPaths, patchStat } from '../../workspace/change-patch.js';
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

const collect = (value: string, previous: string[]): string[] => [...previous, value];

const SYMBOL = { added: 'A', modified: 'M', deleted: 'D' } as const;
/** How each flag tier shows in human output: refused ones with `!`, review ones with `?`. */
const FLAG_MARK = { unsafe: '!', refused: '!', conflict: '!', review: '?' } as const;

/** `diff`, `accept`, `restore`, `checkpoint`, `fork`, `land`: review and decide what a cell changed. */
export function registerTransactionCommands(program: Command): void {
  withCellFlags(
    program
      .command('diff')
      .description('what the cell changed that is not yet in the workspace')
      .argument('[paths...]', 'only these paths (files, or directories and everything under them)'),
  )
    .option('--patch', 'unified diffs of the changes (binary files named)')
    .option('--stat', 'per-file counts of changed lines, like git diff --stat')
    .action(async (paths: string[], flags: CellFlag & JsonFlag & { patch?: boolean; stat?: boolean }) => {
      const ref = cellRef(flags);
      // A killed run is shown at once (its receipt comes with the next run or decision).
      for (const run of unreceiptedRuns(cellDir(ref.paths, ref.cell)).filter((r) => r.state === 'interrupted'))
        note(
          `run ${run.id} (${run.command.join(' ')}) was interrupted: agentcell was killed; its changes are included, not receipted yet`,
        );
      if (flags.patch || flags.stat) {
        const patches = await cellPatch(ref, paths);
        if (flags.json) return printJson(patches);
        if (patches.length === 0) return note('no pending changes');
        if (flags.stat) print(patchStat(patches));
        if (flags.patch) process.stdout.write(patches.map((p) => p.patch).join(''));
        return;
      }
      const changes = (await cellDiff(ref)).filter((c) => paths.length === 0 || matchesPaths(c.path, paths));
      if (flags.json) return printJson(changes);
      if (changes.length === 0) return note('no pending changes');
      for (const c of changes)
        print(
          `${SYMBOL[c.change]} ${c.path}${c.kind === 'dir' ? '/' : ''}${c.flagged ? `    ${FLAG_MARK[c.flagged.tier]} ${c.flagged.reason}` : ''}`,
        );
    });

  withCellFlags(
    program
      .command('accept')
      .description('apply the cell’s changes to the workspace (all, or the paths named)')
      .argument(
        '[paths...]',
        'only these paths (files, or directories and everything under them); the rest stays pending',
      ),
  )
    .option('--exclude <path>', 'leave this path (and what is under it) pending (repeatable)', collect, [])
    .option('--merge', 'merge host edits made since the run with the cell’s changes (three-way, like git)')
    .option(
      '--force',
      'also apply control-plane changes, conflicts (overwriting host edits) and a failed run’s changes',
    )
    .option('--dry-run', 'say what would be applied; change nothing')
    .action(
      async (
        paths: string[],
        flags: CellFlag & JsonFlag & DryRunFlag & { force?: boolean; merge?: boolean; exclude: string[] },
      ) => {
        const report = await acceptCell(cellRef(flags), {
          force: Boolean(flags.force),
          dryRun: Boolean(flags.dryRun),
          paths,
          exclude: flags.exclude,
          merge: Boolean(flags.merge),
        });
        if (flags.json) return printJson(report);
        const marked = new Map(report.flagged.map((f) => [f.path, f]));
        for (const c of report.applied) {
          const flag = marked.get(c.path);
          print(`${SYMBOL[c.change]} ${c.path}${flag ? `    ${FLAG_MARK[flag.tier]} ${flag.reason}` : ''}`);
        }
        for (const r of report.refused) note(`skipped ${r.path}: ${r.reason}`);
        for (const m of report.merged ?? [])
          note(
            m.conflicts === 0
              ? `merged ${m.path}: the host's edit and the cell's change`
              : `merged ${m.path} with ${m.conflicts} conflict(s): resolve the <<<<<<< markers in it`,
          );
        if (report.flagged.length > 0)
          note(
            `${report.flagged.length} change(s) marked ${FLAG_MARK.review} are run by tools on the host: read them before you run those tools`,
          );
        note(
          `${report.dryRun ? 'would apply' : 'applied'} ${report.applied.length} change(s)` +
            (report.pending !== undefined ? `, ${report.pending} left pending in the cell` : '') +
            (report.receipt ? `; receipt ${report.receipt.id}` : ''),
        );
        if (report.landed)
          note(
            report.landed.commit
              ? `landed branch ${report.landed.branch} at ${report.landed.commit.slice(0, 12)} in the host repo`
              : `branch ${report.landed.branch}: no new commits to land (uncommitted changes stay in the cell's checkout)`,
          );
      },
    );

  withCellFlags(program.command('restore').description('drop the cell’s changes (all, or those after a checkpoint)'))
    .option(
      '--to <checkpoint>',
      'keep the layers up to this checkpoint (id, name or number), or go back to a turn checkpoint (turn:N, turn:N@RUN)',
    )
    .option('--dry-run', 'say what would be dropped; change nothing')
    .action(async (flags: CellFlag & JsonFlag & DryRunFlag & { to?: string }) => {
      const report = await restoreCell(cellRef(flags), {
        dryRun: Boolean(flags.dryRun),
        ...(flags.to !== undefined ? { to: flags.to } : {}),
      });
      if (flags.json) return printJson(report);
      const { added, modified, deleted } = report.changes;
      note(
        `${report.dryRun ? 'would drop' : 'dropped'} ${added + modified + deleted} change(s) in ${report.dropped.length} layer(s)` +
          (report.receipt ? `; receipt ${report.receipt.id}` : ''),
      );
      const { turn } = report;
      if (turn)
        note(
          `${report.dryRun ? 'would keep' : 'kept'} turn ${turn.turn} of run ${turn.run} (as its LLM request started at ${turn.at}, ${turn.contentHash}): ${turn.changes.length} change(s)${turn.layer ? ` in layer ${turn.layer.id} (${turn.layer.name ?? ''})` : ''}`,
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

  withCellFlags(
    program
      .command('fork')
      .description('fork this cell at its checkpoint into new cells (frozen layers shared)')
      .argument('<new-cell>', 'the new cell, or with --count the stem of NEW-1 … NEW-N'),
  )
    .option('--count <n>', `fork N cells, NEW-1 … NEW-N, all from the one checkpoint (at most ${MAX_FORKS})`)
    .option('--dry-run', 'change nothing')
    .action(async (newCell: string, flags: CellFlag & JsonFlag & DryRunFlag & { count?: string }) => {
      const dryRun = Boolean(flags.dryRun);
      if (flags.count === undefined) {
        const single = await forkCell(cellRef(flags), checkCellName(newCell), { dryRun });
        if (flags.json) return printJson(single);
        return note(`${single.dryRun ? 'would fork' : 'forked'} into ${single.cell} (${single.layers} layer(s))`);
      }
      const report = await forkCells(cellRef(flags), forkNames(newCell, Number(flags.count)), { dryRun });
      if (flags.json) return printJson(report);
      note(
        `${report.dryRun ? 'would fork' : 'forked'} into ${report.cells.join(', ')} at checkpoint ${report.checkpoint ?? '(none: the workspace as it is)'}` +
          ` (${report.layers} frozen layer(s) shared)` +
          (report.branch ? `; each a candidate for branch ${report.branch}` : '') +
          (report.receipt ? `; receipt ${report.receipt.id}` : ''),
      );
    });

  program
    .command('land')
    .description('accept a cell (as accept does) and then drop its siblings, in one step')
    .argument('<cell>', 'the cell to accept')
    .option('--drop-siblings', 'remove the cells forked from the same parent at the same checkpoint (receipts kept)')
    .option('--merge', 'merge host edits made since the run with the cell’s changes (three-way, like git)')
    .option('--force', 'as accept --force')
    .option('--dry-run', 'say what would be applied and dropped; change nothing')
    .option('--json', 'machine-readable output')
    .action(
      async (
        cell: string,
        flags: JsonFlag & DryRunFlag & { dropSiblings?: boolean; merge?: boolean; force?: boolean },
      ) => {
        const report = await landCell(cellRef({ cell: checkCellName(cell) }), {
          force: Boolean(flags.force),
          dryRun: Boolean(flags.dryRun),
          merge: Boolean(flags.merge),
          dropSiblings: Boolean(flags.dropSiblings),
        });
        if (flags.json) return printJson(report);
        const dry = report.dryRun;
        note(
          `${report.dryRun ? 'would apply' : 'applied'} ${report.accepted.applied.length} change(s) of ${report.cell}` +
            (report.accepted.receipt ? `; receipt ${report.accepted.receipt.id}` : ''),
        );
        if (report.accepted.landed?.commit)
          note(`landed branch ${report.accepted.landed.branch} at ${report.accepted.landed.commit.slice(0, 12)}`);
        for (const d of report.dropped)
          note(
            `${dry ? 'would drop' : 'dropped'} ${d.cell} (${d.droppedChanges ?? '?'} pending change(s); ${d.receipts} receipt(s) ${dry ? 'to keep' : `kept in ${d.keptReceipts ?? '?'}`})`,
          );
      },
    );
}
