import type { Command } from 'commander';
import { prepareRun } from '../../run/prepare-run.js';
import { runFingerprint } from '../../evidence/fingerprint.js';
import { agentcellPaths } from '../../paths.js';
import { currentEvidence } from '../../run/evidence-current.js';
import { sessionExport } from '../../sessions/session-evidence.js';
import { addCellOptions, toCellOptions, type CellFlags } from '../cell-options.js';
import { note, print, printJson, type JsonFlag } from '../output.js';
import { bundleSummaryText, fingerprintText, verificationText } from '../render-evidence.js';

export function registerEvidenceCommands(program: Command, setExit: (code: number) => void): void {
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

  const evidence = program.command('evidence').description('evidence bundles: export, verify, inspect');
  evidence
    .command('export')
    .description(
      'write one signed tar of a run, session or cell: receipts, key, anchor, egress, patch, policy, fingerprint',
    )
    .option('--run <id>', 'a run (its cell’s whole chain comes along, for the links)')
    .option('--session <id>', 'a detached session: its run, with its transcript (ended sessions)')
    .option('--cell <name>', 'a whole cell')
    .requiredOption('-o, --output <file>', 'the bundle to write')
    .option('--json', 'machine-readable output')
    .action(async (flags: { run?: string; session?: string; cell?: string; output: string } & JsonFlag) => {
      const paths = agentcellPaths();
      // Loaded when used: the bundle code (tar, the manifest schema) stays off every other command's start.
      const { exportEvidence } = await import('../../evidence/evidence-bundle.js');
      const report = await exportEvidence({
        paths,
        ...(flags.run !== undefined ? { run: flags.run } : {}),
        ...(flags.session !== undefined ? { session: sessionExport(paths, flags.session) } : {}),
        ...(flags.cell !== undefined ? { cell: flags.cell } : {}),
        out: flags.output,
        current: currentEvidence(paths),
      });
      if (flags.json) printJson(report);
      else
        note(
          `wrote ${report.file}: cell ${report.cell}${report.run ? `, run ${report.run}` : ''}, ${report.members.length} members, signed by key ${report.keyId}`,
        );
    });
  evidence
    .command('verify')
    .description('check a bundle offline: every byte, hash, signature and chain link; names the first failure')
    .argument('<file>', 'the bundle')
    .option('--key <pub>', 'the public key it must be signed with (PEM); default: the bundle’s own')
    .option('--json', 'machine-readable output')
    .action(async (file: string, flags: { key?: string } & JsonFlag) => {
      const { verifyBundle } = await import('../../evidence/verify-bundle.js');
      const result = verifyBundle(file, flags.key);
      if (flags.json) printJson({ ok: result.ok, failure: result.failure, key: result.key, receipts: result.receipts });
      else print(verificationText(result));
      setExit(result.ok ? 0 : 1);
    });
  evidence
    .command('inspect')
    .description('what a bundle says: what ran, what changed, what was reached, assurance, landing')
    .argument('<file>', 'the bundle')
    .option('--key <pub>', 'the public key it must be signed with (PEM)')
    .option('--json', 'machine-readable output')
    .action(async (file: string, flags: { key?: string } & JsonFlag) => {
      const { verifyBundle } = await import('../../evidence/verify-bundle.js');
      const { summarizeBundle } = await import('../../evidence/inspect-bundle.js');
      const summary = summarizeBundle(verifyBundle(file, flags.key));
      if (flags.json) printJson(summary);
      else print(bundleSummaryText(summary));
      setExit(summary.verified.ok ? 0 : 1);
    });
}
