import type { Command } from 'commander';
import { isatty } from 'node:tty';
import { prepareRun } from '../../run/prepare-run.js';
import { AgentcellError } from '../../errors.js';
import { agentcellPaths } from '../../paths.js';
import { attachSession, sendToSession, sessionLogs, stopSession } from '../../sessions/session-client.js';
import { findSession, type SessionRecord } from '../../sessions/session-record.js';
import { listSessions, settleSession, type SessionView } from '../../sessions/session-status.js';
import { startSession, SUPERVISOR_NODE_FLAGS } from '../../sessions/session-start.js';
import { sessionTimeline, type TimelineEvent } from '../../sessions/session-timeline.js';
import { addCellOptions, toCellOptions, type CellFlags } from '../cell-options.js';
import { note, print, printJson, type CliContext, type DryRunFlag, type JsonFlag } from '../output.js';
import { dryRunJson, dryRunText } from '../render.js';
import { registerSuperviseCommand } from './supervise-command.js';

type StartFlags = CellFlags & JsonFlag & DryRunFlag;

/** `session start|attach|send|stop|list|show|logs|timeline`: detached sessions (src/sessions/). */
export function registerSessionCommands(program: Command, ctx: CliContext): void {
  const session = program.command('session').description('detached sessions: start, attach, send, stop, list, logs');

  addCellOptions(
    session
      .command('start')
      .description('start COMMAND (or --agent NAME with its arguments) in the background on a terminal of its own')
      .argument('[command...]', 'the command, or the agent’s arguments (after --)')
      .passThroughOptions(),
  )
    .option('--dry-run', 'print the exact plan and change nothing')
    .option('--json', 'machine-readable output')
    .action(async (argv: string[], flags: StartFlags) => {
      const paths = agentcellPaths();
      const options = toCellOptions(flags);
      if (flags.dryRun) {
        const prepared = await prepareRun({ ...options, argv, tty: true, paths });
        return flags.json ? printJson(dryRunJson(prepared)) : print(dryRunText(prepared));
      }
      if (argv.length === 0 && flags.agent === undefined)
        throw new AgentcellError(
          'USAGE',
          'no command given: agentcell session start [options] -- COMMAND [ARGS...], or --agent NAME',
        );
      const tty = isatty(1) ? process.stdout : undefined;
      const started = Date.now();
      const record = await startSession({
        options,
        argv,
        paths,
        supervisor: [
          process.execPath,
          ...SUPERVISOR_NODE_FLAGS,
          process.argv[1] ?? 'agentcell',
          'session',
          'supervise',
        ],
        ...(tty ? { rows: tty.rows, cols: tty.columns } : {}),
      });
      if (flags.json) return printJson({ ...record, startMs: Date.now() - started });
      print(record.id);
      note(
        `agentcell: session ${record.id} running in cell ${record.cell}; agentcell session attach ${record.id} (detach: Ctrl-] d)`,
      );
    });

  registerSuperviseCommand(session, ctx);

  session
    .command('attach')
    .description('make this terminal the session’s (detach: Ctrl-] d)')
    .argument('<id>')
    .action(async (id: string) => {
      const result = await attachSession(agentcellPaths(), id, { input: process.stdin, output: process.stdout });
      note(
        result.how === 'detached'
          ? `\r\nagentcell: detached from ${id}; it goes on (agentcell session attach ${id})`
          : `\r\nagentcell: session ${id} ended, exit ${result.exitCode ?? 'unknown'}, receipt ${result.receipt ?? 'none'}`,
      );
    });

  session
    .command('send')
    .description('type TEXT into the session, then Enter')
    .argument('<id>')
    .requiredOption('--message <text>', 'what to type')
    .action(
      async (id: string, flags: { message: string }) => void (await sendToSession(agentcellPaths(), id, flags.message)),
    );

  session
    .command('stop')
    .description('end the session: SIGTERM to its command, the cell killed after the grace period')
    .argument('<id>')
    .option('--grace <seconds>', 'how long the command gets to exit', '10')
    .option('--json', 'machine-readable output')
    .action(async (id: string, flags: JsonFlag & { grace: string }) => {
      const grace = Number(flags.grace);
      if (!Number.isFinite(grace) || grace < 0)
        throw new AgentcellError('USAGE', `--grace ${flags.grace}: expected seconds >= 0`);
      const record = await stopSession(agentcellPaths(), id, grace * 1000);
      if (flags.json) return printJson(record);
      print(`${record.id} ${record.state}, exit ${record.exitCode ?? 'none'}, receipt ${record.receipt ?? 'none'}`);
    });

  session
    .command('list')
    .description('sessions: id, cell, agent, state, started, pending changes')
    .option('--cell <name>', 'only this cell’s')
    .option('--json', 'machine-readable output')
    .action(async (flags: JsonFlag & { cell?: string }) => {
      const rows = await listSessions(agentcellPaths(), flags.cell);
      if (flags.json) return printJson(rows);
      if (rows.length === 0) return note('agentcell: no sessions (agentcell session start -- COMMAND)');
      print(['ID', 'CELL', 'AGENT', 'STATE', 'STARTED', 'PENDING'].join('\t'));
      for (const r of rows) print(listRow(r));
    });

  session
    .command('show')
    .argument('<id>')
    .option('--json', 'machine-readable output')
    .action(async (id: string, flags: JsonFlag) => {
      const paths = agentcellPaths();
      const record = await settleSession(paths, findSession(paths, id));
      if (flags.json) return printJson(record);
      print(showText(record));
    });

  session
    .command('logs')
    .description('what the session’s terminal printed (plain text unless --raw)')
    .argument('<id>')
    .option('--follow', 'keep printing until the session ends')
    .option('--raw', 'the bytes as printed, escape sequences and all')
    .action(async (id: string, flags: { follow?: boolean; raw?: boolean }) => {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      await sessionLogs(agentcellPaths(), id, {
        ...flags,
        signal: stop.signal,
        write: (chunk) => void process.stdout.write(chunk),
      });
    });

  session
    .command('timeline')
    .description('the run, LLM calls, egress decisions, checkpoints and decisions of a session, in time order')
    .argument('<id>')
    .option('--json', 'machine-readable output')
    .action(async (id: string, flags: JsonFlag) => {
      const events = await sessionTimeline(agentcellPaths(), id);
      if (flags.json) return printJson(events);
      for (const e of events) print(`${e.time}  ${timelineText(e)}`);
    });
}

function listRow(r: SessionView): string {
  return [r.id, r.cell, r.agent ?? '-', r.state, r.startedAt ?? r.createdAt, String(r.pendingChanges)].join('\t');
}

function showText(r: SessionRecord): string {
  const lines = [
    `session ${r.id}  ${r.state}`,
    `cell       ${r.cell} (${r.workspace})`,
    `agent      ${r.agent ?? '-'}`,
    `command    ${r.command.join(' ')}`,
    `created    ${r.createdAt}`,
    `started    ${r.startedAt ?? '-'}`,
    `ended      ${r.endedAt ?? '-'}`,
    `exit       ${r.exitCode ?? '-'}`,
    `run        ${r.run ?? '-'}`,
    `receipt    ${r.receipt ?? '-'}`,
    `supervisor ${r.supervisor ? `pid ${r.supervisor.pid}` : '-'}`,
  ];
  if (r.transcript) lines.push(`transcript ${r.transcript.bytes} bytes, sha256 ${r.transcript.sha256}`);
  if (r.error) lines.push(`error      ${r.error.code}: ${r.error.message}`);
  return lines.join('\n');
}

function timelineText(e: TimelineEvent): string {
  switch (e.kind) {
    case 'session':
      return `session    ${e.state}${e.detail ? `  ${e.detail}` : ''}`;
    case 'run':
      return `run        ${e.phase} ${e.run}  ${e.detail}`;
    case 'llm':
      return `llm        ${e.provider} ${e.model ?? '?'} ${e.status} ${e.durationMs} ms${e.toolCalls.length ? `  tools: ${e.toolCalls.join(', ')}` : ''}${e.text ? `  "${e.text.replace(/\s+/g, ' ').slice(0, 80)}"` : ''}`;
    case 'egress':
      return `egress     ${e.decision} ${e.host}:${e.port} ${e.reason}  ${e.detail}`;
    case 'checkpoint':
      return `checkpoint ${e.layer} (frozen by ${e.run})`;
    case 'turn':
      return `turn       ${e.turn}  ${e.skipped !== undefined ? `no checkpoint: ${e.skipped}` : `checkpoint ${e.checkpoint}  ${e.contentHash ?? ''}`}`;
    case 'decision':
      return `decision   ${e.decision} ${e.changes} change(s)  ${e.receipt}`;
  }
}
