import type { Command } from 'commander';
import { prepareRun } from '../../cell/prepare-run.js';
import { runFingerprint } from '../../evidence/fingerprint.js';
import { agentcellPaths } from '../../paths.js';
import { addCellOptions, toCellOptions, type CellFlags } from '../cell-options.js';
import { print, printJson, type JsonFlag } from '../output.js';
import { fingerprintText } from '../render-evidence.js';

export function registerEvidenceCommands(program: Command): void {
  addCellOptions(
    program
      .command('fingerprint')
      .description('what a run here would run on: host, backend, engine, runtime, rootfs, seccomp, policy, tools'),
  )
    .option('--json', 'machine-readable output (schemas/fingerprint.v1.json)')
    .action(async (flags: CellFlags & JsonFlag) => {
      const paths = agentcellPaths();
      const prepared = await prepareRun({ ...toCellOptions(flags), argv: ['true'], tty: false, paths });
      const fingerprint = runFingerprint(prepared, paths.state, process.env);
      if (flags.json) printJson(fingerprint);
      else print(fingerprintText(fingerprint));
    });
}
