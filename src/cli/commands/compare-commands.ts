import { Option, type Command } from 'commander';
import { BACKENDS } from '../../_internal/vocabulary.js';
import { checkCellName } from '../../cell/cell-name.js';
import { agentcellPaths } from '../../paths.js';
import { compareCells, type CellComparison } from '../../run/compare-cells.js';
import { note, print, printJson, type DryRunFlag, type JsonFlag } from '../output.js';

type CompareFlags = JsonFlag & DryRunFlag & { check?: string; backend?: string; timeout?: string };

/** `compare CELL…`: candidates side by side (src/run/compare-cells.ts). */
export function registerCompareCommands(program: Command): void {
  program
    .command('compare')
    .description('cells side by side: changes, diff size, last exit code, egress, tokens, a check')
    .argument('<cells...>', 'the cells to compare (e.g. the forks NEW-1 … NEW-N)')
    .option('--check <cmd>', 'run `sh -c CMD` in a throwaway fork of each cell and report pass/fail (receipted)')
    .addOption(new Option('--backend <name>', 'sandbox backend for the check').choices([...BACKENDS]))
    .option('--timeout <duration>', 'stop each check after this long (e.g. 90s, 30m)')
    .option('--dry-run', 'read the cells; run no check')
    .option('--json', 'machine-readable output')
    .action(async (cells: string[], flags: CompareFlags) => {
      const rows = await compareCells(cells.map(checkCellName), {
        paths: agentcellPaths(),
        command: ['agentcell', ...process.argv.slice(2)],
        ...(flags.check !== undefined ? { check: flags.check } : {}),
        runOptions: {
          ...(flags.backend !== undefined ? { backend: flags.backend } : {}),
          ...(flags.timeout !== undefined ? { timeout: flags.timeout } : {}),
        },
        dryRun: Boolean(flags.dryRun),
        onCheck: (cell, fork) => note(`check in ${cell} (its fork ${fork}): ${flags.check ?? ''}`),
      });
      if (flags.json) return printJson(rows);
      print(compareTable(rows, flags.dryRun && flags.check !== undefined ? flags.check : undefined));
    });
}

/** One column per cell, one row per measure. */
function compareTable(rows: readonly CellComparison[], plannedCheck?: string): string {
  const measures: [string, (r: CellComparison) => string][] = [
    ['forked from', (r) => (r.forkedFrom ? `${r.forkedFrom}@${r.forkCheckpoint ?? '-'}` : '-')],
    ['files +/~/-', (r) => `${r.files.added}/${r.files.modified}/${r.files.deleted}`],
    [
      'lines +/-',
      (r) => `+${r.lines.added}/-${r.lines.removed}${r.lines.binaryFiles ? ` (${r.lines.binaryFiles} bin)` : ''}`,
    ],
    ['runs', (r) => String(r.runs)],
    [
      'last exit',
      (r) => (r.lastRun ? (r.lastRun.exitCode === null ? r.lastRun.status : String(r.lastRun.exitCode)) : '-'),
    ],
    ['egress ok/denied', (r) => `${r.egress.allowed}/${r.egress.denied}`],
    ['tokens in/out', (r) => (r.tokens ? `${r.tokens.input}/${r.tokens.output}` : '-')],
  ];
  if (plannedCheck !== undefined) measures.push(['check', () => 'would run']);
  else if (rows.some((r) => r.check))
    measures.push(['check', (r) => (r.check ? `${r.check.passed ? 'pass' : 'FAIL'} (exit ${r.check.exitCode})` : '-')]);
  const cells = [['', ...rows.map((r) => r.cell)], ...measures.map(([name, value]) => [name, ...rows.map(value)])];
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return cells
    .map((line) =>
      line
        .map((v, i) => v.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
