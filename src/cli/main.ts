import { CommanderError } from 'commander';
import { PhaseTimer } from '../run/phase-timer.js';
import { AgentcellError, pathErrorOf } from '../errors.js';
import { closeInheritedFds } from '../_internal/inherited-fds.js';
import { agentcellPaths } from '../paths.js';
import { buildProgram } from './program.js';
import { note, printJson } from './output.js';

// Started before anything else so the phases add up to the whole run.
const timer = new PhaseTimer();

async function main(): Promise<void> {
  closeInheritedFds(); // before anything is spawned (DESIGN.md invariant 10)
  const json = jsonRequested(process.argv.slice(2));
  let code = 0;
  try {
    const ctx = { timer, setExit: (c: number): void => void (code = c) };
    const program = await buildProgram(ctx, process.argv);
    await program.parseAsync(process.argv);
    // The build's warm-up run (scripts/bundle.mjs) writes V8's code cache at exit: it loads every
    // command module too, so their code is in the cache when another command runs.
    if (process.env['AGENTCELL_WRITE_CODE_CACHE'] === '1') await buildProgram(ctx);
  } catch (error) {
    code = report(error, json);
  }
  process.exitCode = code;
}

/** `--json` before any `--`, so a command's own --json is not mistaken for ours. */
function jsonRequested(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).includes('--json');
}

function report(error: unknown, json: boolean): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0)
      return 0;
    if (json) printJson({ error: { code: 'USAGE', message: error.message } });
    return 2;
  }
  const failure = pathErrorOf(error, stateHint(error)) ?? error;
  if (failure instanceof AgentcellError) {
    if (json) printJson(failure.toJSON());
    else note(`agentcell: ${failure.message}`);
    return failure.exitCode;
  }
  const internal = new AgentcellError('INTERNAL', `unexpected failure: ${(error as Error).stack ?? String(error)}`);
  if (json) printJson(internal.toJSON());
  else note(`agentcell: ${internal.message}`);
  return internal.exitCode;
}

void main();

/** Where to look when a path under agentcell's own state or config fails. */
function stateHint(error: unknown): string {
  const path = (error as NodeJS.ErrnoException).path ?? '';
  const { state, config } = agentcellPaths();
  if (!path.startsWith(state) && !path.startsWith(config)) return '';
  return `: agentcell keeps its state in ${state} and config in ${config}; if AGENTCELL_HOME, XDG_STATE_HOME or XDG_CONFIG_HOME is set, point it at a writable directory`;
}
