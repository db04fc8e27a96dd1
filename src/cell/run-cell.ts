import { AgentcellError } from '../errors.js';
import type { RunOutcome } from '../backends/backend.js';
import type { PreparedRun } from './prepare-run.js';

/** Runs a prepared cell to completion; the outcome carries the command's exit code. */
export async function runPrepared(prepared: PreparedRun): Promise<RunOutcome> {
  try {
    const outcome = await prepared.backend.run(prepared.spec);
    prepared.timer.mark('run');
    return outcome;
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT')
      throw new AgentcellError(
        'BACKEND_UNAVAILABLE',
        `${prepared.backend.name} is not installed: sudo apt-get install bubblewrap (then: agentcell doctor)`,
        { cause },
      );
    throw cause;
  }
}
