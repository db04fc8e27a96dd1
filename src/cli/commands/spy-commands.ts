import type { Command } from 'commander';
import { cellDir, locateExistingCell } from '../../cell/cell-store.js';
import { liveRuns } from '../../cell/cell-egress-log.js';
import { findSpyLog, followLiveSpy, followSpyLog } from '../../egress/log/spy-files.js';
import type { SpyRecord } from '../../egress/log/spy-log.js';
import { parseSpyRecord, readSpyLog, renderSpyRecord } from '../../egress/log/spy-render.js';
import { agentcellPaths } from '../../paths.js';
import { print, printJson, type JsonFlag } from '../output.js';

interface SpyFlags extends JsonFlag {
  cell?: string;
  workspace?: string;
  run?: string;
  follow?: boolean;
}

/** `spy`: the LLM API calls a run made through inspected hosts, readable (or JSON). */
export function registerSpyCommands(program: Command): void {
  program
    .command('spy')
    .description('LLM API calls through inspected hosts (provider, model, messages, tool calls, tokens)')
    .option('--cell <name>', 'cell (default: the workspace’s own)')
    .option('--workspace <dir>', 'workspace directory (default: the current directory)')
    .option('--run <id>', 'run (default: the latest one with a spy log)')
    .option('--json', 'machine-readable output (with --follow: one JSON object per line)')
    .option('--follow', 'keep printing calls as they are made, until interrupted')
    .action(async (flags: SpyFlags) => {
      const paths = agentcellPaths();
      const { cell } = locateExistingCell(paths, flags);
      const dir = cellDir(paths, cell);
      const show = (record: SpyRecord): void =>
        print(flags.json ? JSON.stringify(parseSpyRecord(record)) : renderSpyRecord(record));
      if (!flags.follow) {
        const { run, path } = findSpyLog(dir, cell, flags.run);
        const records = readSpyLog(path);
        if (flags.json) return printJson({ cell, run, calls: records.map(parseSpyRecord) });
        for (const record of records) print(renderSpyRecord(record));
        return;
      }
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      try {
        if (flags.run !== undefined)
          await followSpyLog(findSpyLog(dir, cell, flags.run).path, show, { signal: stop.signal });
        else await followLiveSpy(dir, () => liveRuns(paths, cell), show, { signal: stop.signal });
      } finally {
        process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
      }
    });
}
