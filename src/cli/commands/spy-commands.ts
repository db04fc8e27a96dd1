import type { Command } from 'commander';
import { cellDir, locateExistingCell } from '../../cell/cell-store.js';
import { liveRuns } from '../../cell/cell-egress-log.js';
import { findSpyLog, followLiveSpy, followSpyLog } from '../../egress/log/spy-files.js';
import type { SpyRecord } from '../../egress/log/spy-log.js';
import { renderSpyRaw } from '../../egress/log/spy-raw.js';
import { parseSpyRecord, readSpyLog, renderSpyRecord } from '../../egress/log/spy-render.js';
import { agentcellPaths } from '../../paths.js';
import { openPager } from '../pager.js';
import { print, type JsonFlag } from '../output.js';

interface SpyFlags extends JsonFlag {
  cell?: string;
  workspace?: string;
  run?: string;
  follow?: boolean;
  raw?: boolean;
  pager?: boolean;
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
    .option('--raw', 'each call’s request and response bodies as recorded (secrets redacted, no headers kept)')
    .option('--follow', 'keep printing calls as they are made, until interrupted')
    .option('--pager', 'on a terminal, show the output in `less -R` (with --follow: `less +F`, scrollable live)')
    .action(async (flags: SpyFlags) => {
      const paths = agentcellPaths();
      const { cell } = locateExistingCell(paths, flags);
      const dir = cellDir(paths, cell);
      const render = (record: SpyRecord): string => (flags.raw ? renderSpyRaw(record) : renderSpyRecord(record));
      const json = (record: SpyRecord): unknown => (flags.raw ? record : parseSpyRecord(record));
      if (!flags.follow) {
        const { run, path } = findSpyLog(dir, cell, flags.run);
        const records = readSpyLog(path);
        const text = flags.json
          ? [JSON.stringify({ cell, run, calls: records.map(json) }, null, 2)]
          : records.map(render);
        const pager = flags.pager ? openPager({ follow: false }) : undefined;
        for (const block of text) (pager ? pager.write : print)(block);
        if (pager) {
          pager.end();
          await pager.closed;
        }
        return;
      }
      const pager = flags.pager ? openPager({ follow: true }) : undefined;
      const out = pager ? pager.write : print;
      const show = (record: SpyRecord): void => out(flags.json ? JSON.stringify(json(record)) : render(record));
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      // Ctrl-C stops following (less gets it too, and scrolls what it has); quitting less stops it too.
      void pager?.closed.then(() => stop.abort());
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      try {
        if (flags.run !== undefined)
          await followSpyLog(findSpyLog(dir, cell, flags.run).path, show, { signal: stop.signal });
        else await followLiveSpy(dir, () => liveRuns(paths, cell), show, { signal: stop.signal });
      } finally {
        process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
        if (pager) {
          pager.end();
          await pager.closed;
        }
      }
    });
}
