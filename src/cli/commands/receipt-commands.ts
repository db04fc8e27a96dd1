import type { Command } from 'commander';
import { locateExistingCell, cellDir } from '../../cell/cell-store.js';
import { AgentcellError } from '../../errors.js';
import { agentcellPaths } from '../../paths.js';
import { anchorPath } from '../../receipts/chain-anchor.js';
import { decisionFor, type Receipt } from '../../receipts/receipt.js';
import { unreceiptedRuns } from '../../receipts/run-journal.js';
import { latestReceipt, listReceipts, readReceipt, verifyCell } from '../../receipts/receipt-store.js';
import { renderReceiptJson, renderReceiptMarkdown } from '../../receipts/render-receipt.js';
import { loadPublicKeys } from '../../receipts/signing-key.js';
import { note, print, printJson, type JsonFlag } from '../output.js';

/** One line of `receipt list`: a receipt, or a begun run not receipted yet (`signed: false`). */
interface ListRow {
  id: string;
  seq: number | null;
  kind: Receipt['kind'];
  command: string[];
  status: Receipt['status'] | 'running';
  exitCode: number | null;
  decision: Receipt['decision'];
  startedAt: string;
  changes: Receipt['changes'] | null;
  signed: boolean;
  /** A partial accept's paths. */
  scope?: Receipt['scope'];
}

interface CellFlag {
  cell?: string;
  workspace?: string;
}

function receiptsOf(flags: CellFlag): { dir: string; cell: string } {
  const paths = agentcellPaths();
  const { cell } = locateExistingCell(paths, flags);
  return { dir: cellDir(paths, cell), cell };
}

function withCellFlags(command: Command): Command {
  return command
    .option('--cell <name>', 'cell (default: the workspace’s own)')
    .option('--workspace <dir>', 'workspace directory (default: the current directory)');
}

/** `receipt show | list | verify`. */
export function registerReceiptCommands(program: Command, setExit: (code: number) => void): void {
  const receipt = program.command('receipt').description('signed, chained receipts of runs and decisions');

  withCellFlags(receipt.command('show').description('one receipt (default: the latest)').argument('[id]'))
    .option('--latest', 'the latest receipt (the default)')
    .option('--format <format>', 'md or json', 'md')
    .option('--json', 'the same as --format json')
    .action((id: string | undefined, flags: CellFlag & JsonFlag & { format: string }) => {
      if (flags.json) flags.format = 'json';
      const { dir, cell } = receiptsOf(flags);
      const r = id === undefined ? latestReceipt(dir) : readReceipt(dir, id);
      if (!r) throw new AgentcellError('RECEIPT_NOT_FOUND', `cell ${cell} has no receipts yet`);
      if (flags.format === 'json') process.stdout.write(renderReceiptJson(r));
      else if (flags.format === 'md')
        print(renderReceiptMarkdown(r, { decision: decisionFor(listReceipts(dir), r.id) }));
      else throw new AgentcellError('USAGE', `--format ${flags.format}: expected md or json`);
    });

  withCellFlags(receipt.command('list').description('the cell’s receipts, oldest first'))
    .option('--json', 'machine-readable output')
    .action((flags: CellFlag & JsonFlag) => {
      const { dir } = receiptsOf(flags);
      const all = listReceipts(dir);
      const rows = all.map((r): ListRow => ({
        id: r.id,
        seq: r.seq,
        kind: r.kind,
        command: r.command,
        status: r.status,
        exitCode: r.exitCode,
        decision: decisionFor(all, r.id),
        startedAt: r.startedAt,
        changes: r.changes,
        signed: true,
        ...(r.scope ? { scope: r.scope } : {}),
      }));
      for (const run of unreceiptedRuns(dir))
        rows.push({
          id: run.id,
          seq: null,
          kind: 'run',
          command: run.command,
          status: run.state,
          exitCode: null,
          decision: 'pending',
          startedAt: run.startedAt,
          changes: null,
          signed: false,
        });
      if (flags.json) return printJson(rows);
      for (const r of rows) {
        const exit = r.exitCode === null ? '-' : String(r.exitCode);
        const what =
          r.kind === 'run'
            ? `exit ${exit} ${r.status}`
            : r.scope
              ? `decision (${r.scope.paths.length} path(s))`
              : 'decision';
        const unsigned = r.signed ? '' : '  (not receipted yet: the next run or decision receipts it)';
        print(
          `${(r.seq === null ? '-' : String(r.seq)).padStart(4)} ${r.id} ${r.startedAt} ${what} ${r.decision}  ${r.command.join(' ')}${unsigned}`,
        );
      }
    });

  withCellFlags(receipt.command('verify').description('check every signature and the chain'))
    .option('--json', 'machine-readable output')
    .action((flags: CellFlag & JsonFlag) => {
      const { dir, cell } = receiptsOf(flags);
      const { config } = agentcellPaths();
      const result = verifyCell(dir, loadPublicKeys(config), { cell, anchor: anchorPath(config, dir, cell) });
      if (flags.json) printJson(result);
      else if (result.ok) note(`ok: ${result.checked} receipt(s) in cell ${cell} verify`);
      else for (const p of result.problems) note(`receipt #${p.seq} ${p.id}: ${p.problem}`);
      setExit(result.ok ? 0 : 1);
    });
}
