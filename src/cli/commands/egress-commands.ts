import type { Command } from 'commander';
import { followCellEgress, readCellEgress } from '../../cell/cell-egress-log.js';
import { locateCell, locateExistingCell, openCell, readCell } from '../../cell/cell-store.js';
import { cellSshDir, ensureCellSshKey } from '../../cell/cell-ssh-key.js';
import { reloadCellEgress } from '../../cell/egress-reload.js';
import { allowHosts, type AllowHostsResult } from '../../cell/allow-hosts.js';
import { allowFromLog } from '../../cell/allow-from-log.js';
import { AgentcellError } from '../../errors.js';
import { usesGateway } from '../../_internal/vocabulary.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ReloadReport } from '../../egress/gateway/egress-control.js';
import type { EgressEvent } from '../../egress/log/egress-log.js';
import type { EgressLogChunk } from '../../egress/log/egress-log-reader.js';
import { agentcellPaths, type AgentcellPaths } from '../../paths.js';
import { note, print, printJson, type DryRunFlag, type JsonFlag } from '../output.js';

interface CellFlag {
  cell?: string;
  workspace?: string;
}

interface AllowFlags extends CellFlag, JsonFlag, DryRunFlag {
  fromLog?: boolean;
  run?: string;
}

interface LogFlags extends CellFlag, JsonFlag {
  run?: string;
  all?: boolean;
  follow?: boolean;
}

function withCellFlags(command: Command): Command {
  return command
    .option('--cell <name>', 'cell (default: the workspace’s own)')
    .option('--workspace <dir>', 'workspace directory (default: the current directory)')
    .option('--json', 'machine-readable output');
}

/** `egress log` and `allow`: a cell's network decisions, and reloading its allowlists while it runs. */
export function registerEgressCommands(program: Command, setExit: (code: number) => void): void {
  const egress = program.command('egress').description('the egress gateway: what a cell’s network did');
  withCellFlags(
    egress.command('log').description('one line per egress decision of a run (default: the live or latest run)'),
  )
    .option('--run <id>', 'this run’s log')
    .option('--all', 'every run’s log, oldest first')
    .option('--follow', 'follow the live run (or wait for the next) until it ends')
    .action(async (flags: LogFlags) => {
      const paths = agentcellPaths();
      // --follow may wait for a cell's first run; anything else reads a cell that must exist.
      const { cell } = flags.follow ? locateCell(paths, flags) : locateExistingCell(paths, flags);
      if (flags.follow && !readCell(paths, cell)) note(`agentcell: no cell ${cell} yet; waiting for its first run`);
      const show = (chunk: EgressLogChunk): void => {
        if (flags.json) for (const line of chunk.lines) print(line);
        else for (const event of chunk.events) print(eventLine(event, Boolean(flags.all)));
      };
      if (!flags.follow) {
        const chunk = readCellEgress(paths, cell, { run: flags.run, all: flags.all });
        show(chunk);
        if (!flags.json && chunk.events.length === 0) note(`no egress decisions logged in cell ${cell}`);
        return;
      }
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      try {
        await followCellEgress(paths, cell, { run: flags.run, onChunk: show, signal: stop.signal });
      } finally {
        process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      }
    });

  withCellFlags(
    program
      .command('allow')
      .description(
        'reload a running cell’s network allowlists from the host-side policy (never widens beyond it); with HOST[:PORT]…, first add them to the workspace’s agentcell.toml',
      )
      .argument('[hosts...]', 'host patterns to add to [network] allow (e.g. api.example.com, *.example.org:443)'),
  )
    .option('--dry-run', 'say what would change (the diff of agentcell.toml); change nothing')
    .option('--from-log', 'add the hosts a --network learn run reached that the policy would refuse')
    .option('--run <id>', 'with --from-log: this run (default: the cell’s latest run that learned something)')
    .action(async (hosts: string[], flags: AllowFlags) => {
      const paths = agentcellPaths();
      if (flags.fromLog || flags.run !== undefined) return allowFromLogCommand(paths, hosts, flags, setExit);
      if (hosts.length > 0) return allowHostsCommand(paths, hosts, flags, setExit);
      const { cell } = locateExistingCell(paths, flags);
      const report = await reloadCellEgress(paths, cell, { dryRun: Boolean(flags.dryRun) });
      if (flags.json) return printJson(report);
      for (const line of reloadLines(report)) print(line);
    });

  registerPubkey(program);
}

function registerPubkey(program: Command): void {
  withCellFlags(
    program
      .command('pubkey')
      .description('the cell’s own SSH public key (made on first use; the private half is only ever inside the cell)'),
  )
    .option('--dry-run', 'make no key; say whether one would be made')
    .action((flags: CellFlag & JsonFlag & DryRunFlag) => {
      const paths = agentcellPaths();
      const { cell, workspace } = locateCell(paths, flags);
      if (flags.dryRun && !existsSync(join(cellSshDir(paths, cell), 'id_ed25519'))) {
        if (flags.json)
          return printJson({ cell, dryRun: true, wouldCreate: join(cellSshDir(paths, cell), 'id_ed25519') });
        return note(
          `would make an ed25519 key for cell ${cell} in ${cellSshDir(paths, cell)} (dry run: nothing written)`,
        );
      }
      openCell(paths, cell, workspace);
      const key = ensureCellSshKey(paths, cell);
      if (flags.json)
        return printJson({ cell, publicKey: key.publicKey, fingerprint: key.fingerprint, created: key.created });
      print(key.publicKey);
      if (key.created)
        note(`made a new key for cell ${cell} (${key.fingerprint}); add the line above where the cell should log in`);
    });
}

function eventLine(e: EgressEvent, withRun: boolean): string {
  const target = `${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
  const why = e.wouldBe
    ? `would be denied: ${e.wouldBe.reason}${e.wouldBe.rule === null ? '' : ` ${e.wouldBe.rule}`}`
    : e.rule === null
      ? e.reason
      : `${e.reason} ${e.rule}`;
  return [
    ...(withRun ? [e.run] : []),
    e.time,
    // A learn-mode allowance the allow list would have refused: never shown as a plain allow.
    (e.wouldBe ? 'learn' : e.decision).padEnd(5),
    e.kind.padEnd(7),
    target,
    e.address ?? '-',
    why,
    `up ${bytes(e.bytesUp)} down ${bytes(e.bytesDown)}`,
    ...(e.revoked ? ['revoked'] : []),
  ].join('  ');
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** `allow HOST…`: edit agentcell.toml, then reload the workspace's running cells; a failed reload exits 2. */
async function allowHostsCommand(
  paths: AgentcellPaths,
  hosts: string[],
  flags: CellFlag & JsonFlag & DryRunFlag,
  setExit: (code: number) => void,
): Promise<void> {
  const { cell, workspace } = locateExistingCell(paths, flags);
  const result = await allowHosts(paths, workspace, hosts, {
    dryRun: Boolean(flags.dryRun),
    ...(flags.cell !== undefined ? { cell } : {}),
  });
  if (result.reloads.some((r) => 'error' in r)) setExit(2);
  if (flags.json) return printJson(result);
  printAllowHosts(result);
}

/** `allow --from-log [--run ID]`: what a learn-mode run reached, as allow entries (same edit and reloads). */
async function allowFromLogCommand(
  paths: AgentcellPaths,
  hosts: string[],
  flags: AllowFlags,
  setExit: (code: number) => void,
): Promise<void> {
  if (hosts.length > 0 || !flags.fromLog)
    throw new AgentcellError('USAGE', 'use either agentcell allow HOST… or agentcell allow --from-log [--run ID]');
  const { cell, workspace } = locateExistingCell(paths, flags);
  const result = await allowFromLog(paths, cell, workspace, {
    dryRun: Boolean(flags.dryRun),
    onlyCell: flags.cell !== undefined,
    ...(flags.run !== undefined ? { run: flags.run } : {}),
  });
  if (result.reloads.some((r) => 'error' in r)) setExit(2);
  if (flags.json) return printJson(result);
  print(`run ${result.run} learned ${result.learned.length} host(s) the policy would refuse`);
  printAllowHosts(result);
}

function printAllowHosts(result: AllowHostsResult): void {
  if (result.present.length > 0) print(`already allowed in ${result.file}: ${result.present.join(', ')}`);
  if (result.added.length === 0) print(`nothing to add to ${result.file}`);
  else {
    print(`${result.dryRun ? 'would add' : 'added'} to ${result.file}: ${result.added.join(', ')}`);
    for (const line of result.diff) print(line);
  }
  if (!usesGateway(result.networkMode))
    note(
      `network.mode is "${result.networkMode}" for this workspace: allow entries apply to runs with network.mode = "allowlist" (or --network allowlist)`,
    );
  if (result.cells.length === 0) print('no cell of this workspace is running; the next run reads the file');
  else if (result.dryRun) print(`would reload running cell(s): ${result.cells.join(', ')}`);
  for (const reload of result.reloads) {
    if ('error' in reload) print(`cell ${reload.cell}: reload failed: ${reload.error.code}: ${reload.error.message}`);
    else for (const line of reloadLines(reload.report)) print(`cell ${reload.cell}: ${line.trimStart()}`);
  }
}

function reloadLines(r: ReloadReport): string[] {
  const lines = [
    `${r.dryRun ? 'would reload' : 'reloaded'} run ${r.run} from ${r.files.join(', ') || 'built-in defaults and flags'}`,
    `  policy ${r.policyHash}${r.dryRun ? '' : ' (recorded in the run’s receipt)'}`,
  ];
  const changes = (['allow', 'deny', 'resolve'] as const).flatMap((key) => [
    ...r.added[key].map((entry) => `  + ${key} ${entry}`),
    ...r.removed[key].map((entry) => `  - ${key} ${entry}`),
  ]);
  lines.push(...(changes.length > 0 ? changes : ['  no change']));
  if (!r.dryRun) lines.push(`  ${r.revoked} open connection(s) revoked`);
  return lines;
}
