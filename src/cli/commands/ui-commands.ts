import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AgentcellError } from '../../errors.js';
import { findExecutable } from '../../_internal/find-executable.js';
import { agentcellPaths } from '../../paths.js';
import { note, print, printJson, type JsonFlag } from '../output.js';

interface UiFlags extends JsonFlag {
  port: string;
  bind: string;
  open?: boolean;
}

/**
 * Opens the dashboard through a 0600 file that redirects to its URL, so the token is not
 * on xdg-open's (or the browser's) command line, where other local users can read it.
 */
function openInBrowser(url: string): void {
  const opener = findExecutable('xdg-open');
  if (!opener) return note('--open: no xdg-open on PATH; open the URL above yourself');
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-ui-'));
  const file = join(dir, 'open.html');
  writeFileSync(file, `<!doctype html><meta http-equiv="refresh" content="0;url=${url}">`, { mode: 0o600 });
  spawn(opener, [pathToFileURL(file).href], { detached: true, stdio: 'ignore' }).unref();
}

/** `ui`: the review dashboard on loopback until interrupted. */
export function registerUiCommands(program: Command): void {
  program
    .command('ui')
    .description('the review dashboard in your browser (127.0.0.1 only, with a per-launch token)')
    .option('--port <n>', 'port to listen on (default: a free one)', '0')
    .option('--bind <address>', 'address to listen on: only 127.0.0.1 is accepted', '127.0.0.1')
    .option('--open', 'open the dashboard in the default browser')
    .option('--json', 'print {url, port} as JSON, then serve')
    .action(async (flags: UiFlags) => {
      if (!/^\d+$/.test(flags.port))
        throw new AgentcellError('USAGE', `--port ${flags.port}: expected a port number (0 picks a free one)`);
      // Loaded here, not at start-up: the dashboard pulls in the library's whole surface.
      const { startUi } = await import('../../ui/ui-server.js');
      const ui = await startUi({ paths: agentcellPaths(), port: Number(flags.port), bind: flags.bind });
      if (flags.json) printJson({ url: ui.url, port: ui.port, pid: process.pid });
      else {
        print(ui.url);
        note('the URL carries this launch’s token: keep it to yourself. Ctrl-C stops the dashboard.');
      }
      if (flags.open) openInBrowser(ui.url);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve).once('SIGTERM', resolve);
      });
      await ui.close();
    });
}
