import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import { isatty } from 'node:tty';
import { join } from 'node:path';
import { cellDiff } from '../../cell/cell-decisions.js';
import { collectGarbage } from '../../cell/cell-gc.js';
import { checkCellName } from '../../cell/cell-name.js';
import { removeCell } from '../../cell/cell-remove.js';
import { cellDir, cellNotFound, listCells, readCell, siblingCells } from '../../cell/cell-store.js';
import { readBranchRecord } from '../../cell/branch-cell.js';
import { agentcellPaths } from '../../paths.js';
import { cellLockHolder } from '../../receipts/cell-lock.js';
import { describeHolder, type LockHolder } from '../../_internal/file-lock.js';
import { isProcessAlive } from '../../_internal/process-identity.js';
import { latestReceipt, listReceipts } from '../../receipts/receipt-store.js';
import { peekLayerStack } from '../../workspace/overlay/layer-stack.js';
import { note, print, printJson, type DryRunFlag, type JsonFlag } from '../output.js';

/** Who holds a cell now; a lock left by a dead agentcell does not count. */
function liveHolder(dir: string): LockHolder | null {
  const holder = cellLockHolder(dir);
  return holder && isProcessAlive(holder) ? holder : null;
}

/** `cell list | show | rm` and `gc`. */
export function registerCellCommands(program: Command): void {
  const cell = program.command('cell').description('cells: list, show, remove');

  cell
    .command('list')
    .option('--json', 'machine-readable output')
    .action(async (flags: JsonFlag) => {
      const paths = agentcellPaths();
      const rows = await Promise.all(
        listCells(paths).map(async (c) => {
          const dir = cellDir(paths, c.name);
          const last = latestReceipt(dir);
          const locked = liveHolder(dir) !== null;
          const branch = readBranchRecord(paths, c.name);
          return {
            ...c,
            receipts: last?.seq ?? 0,
            lastRun: last?.startedAt ?? null,
            locked,
            state: locked ? 'running' : 'idle',
            // null: in use (its layers are moving) or unreadable (cell show says why)
            pending: locked
              ? null
              : await cellDiff({ paths, cell: c.name, workspace: c.workspace, command: [] }).then(
                  (changes) => changes.length,
                  () => null,
                ),
            branch: branch?.branch ?? null,
            base: branch?.base ?? null,
          };
        }),
      );
      if (flags.json) return printJson(rows);
      for (const r of rows)
        print(
          `${r.name}  ${r.workspace}  ${r.receipts} receipt(s)  ${r.state}${r.pending !== null ? `  ${r.pending} pending` : ''}${r.branch !== null ? `  branch ${r.branch} from ${(r.base ?? '').slice(0, 12)}` : ''}`,
        );
    });

  cell
    .command('show')
    .argument('<name>')
    .option('--json', 'machine-readable output')
    .action(async (given: string, flags: JsonFlag) => {
      const paths = agentcellPaths();
      const name = checkCellName(given);
      const record = readCell(paths, name);
      if (!record) throw cellNotFound(paths, name);
      const dir = cellDir(paths, name);
      // Peek: a read never finishes an interrupted operation or starts a purge.
      const layers = existsSync(join(dir, 'layers.json')) ? peekLayerStack(dir).layers : [];
      const holder = liveHolder(dir);
      const pending = await cellDiff({ paths, cell: name, workspace: record.workspace, command: [] });
      const details = {
        ...record,
        dir,
        checkpoints: layers.map(({ id, seq, name: label, createdAt, policyHash }) => ({
          id,
          seq,
          name: label,
          createdAt,
          policyHash,
        })),
        pendingChanges: pending.length,
        siblings: siblingCells(paths, name).map((c) => c.name),
        receipts: listReceipts(dir).length,
        inUseBy: holder ? describeHolder(holder) : null,
      };
      if (flags.json) return printJson(details);
      print(`cell ${record.name}\n  workspace ${record.workspace}\n  state     ${dir}`);
      if (record.forkedFrom)
        print(
          `  forked from ${record.forkedFrom}${record.forkPoint ? ` at checkpoint ${record.forkPoint.checkpoint ?? '(none)'}` : ''}${details.siblings.length > 0 ? `; siblings ${details.siblings.join(', ')}` : ''}`,
        );
      print(`  ${details.receipts} receipt(s), ${details.pendingChanges} pending change(s)`);
      for (const l of details.checkpoints)
        print(`  checkpoint #${l.seq} ${l.id}${l.name ? ` (${l.name})` : ''} ${l.createdAt}`);
      if (details.inUseBy) print(`  in use by ${details.inUseBy}`);
    });

  cell
    .command('rm')
    .argument('<name>')
    .option('--force', 'remove even with pending changes')
    .option('--keep-receipts', "copy the cell's receipts (with their anchor and public key) out before removing it")
    .option('--no-keep-receipts', 'delete the receipts without asking')
    .option('--dry-run', 'say what would be removed; change nothing')
    .option('--json', 'machine-readable output')
    .action(async (given: string, flags: JsonFlag & DryRunFlag & { force?: boolean; keepReceipts?: boolean }) => {
      const name = checkCellName(given);
      const removal = await removeCell(agentcellPaths(), name, {
        force: flags.force === true,
        dryRun: flags.dryRun === true,
        command: ['agentcell', 'cell', 'rm', name],
        keepReceipts: flags.keepReceipts ?? (flags.json ? false : (count) => askToKeep(name, count)),
      });
      if (flags.json) return printJson(removal);
      note(`${flags.dryRun ? 'would remove' : 'removed'} cell ${name} (${removal.dir})`);
      if (removal.keptReceipts) note(`kept its ${removal.receipts} receipt(s) in ${removal.keptReceipts}`);
      else if (removal.receipts > 0)
        note(
          `${flags.dryRun ? 'would delete' : 'deleted'} its ${removal.receipts} receipt(s) (--keep-receipts keeps them)`,
        );
    });

  program
    .command('gc')
    .description('delete dropped layers that are still on disk, and what killed runs left on /dev/shm')
    .option('--dry-run', 'change nothing')
    .option('--json', 'machine-readable output')
    .action(async (flags: JsonFlag & DryRunFlag) => {
      const { cells, busy, runtime } = await collectGarbage(agentcellPaths(), { dryRun: flags.dryRun === true });
      if (flags.json) printJson({ cells, purged: !flags.dryRun, busy, runtime });
      else {
        note(`${flags.dryRun ? 'would purge' : 'purged'} dropped layers in ${cells.length - busy.length} cell(s)`);
        if (runtime.length > 0)
          note(
            `${flags.dryRun ? 'would remove' : 'removed'} ${runtime.length} leftover(s) of killed runs from /dev/shm`,
          );
        if (busy.length > 0) note(`skipped, in use: ${busy.join(', ')}`);
      }
    });
}

/** On a terminal, `cell rm` offers to keep the receipts it would delete; elsewhere it never waits. */
async function askToKeep(name: string, receipts: number): Promise<boolean> {
  if (!isatty(0) || !isatty(2)) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`cell ${name} has ${receipts} receipt(s); keep a copy before removing it? [Y/n] `);
    return !/^n/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
