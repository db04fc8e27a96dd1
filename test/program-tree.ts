import { describeCommand } from '../src/cli/command-tree.js';

/** The program exactly as the CLI builds it. */
export async function programTree(): Promise<ReturnType<typeof describeCommand>> {
  const { buildProgram } = await import('../src/cli/program.js');
  const { PhaseTimer } = await import('../src/run/phase-timer.js');
  return describeCommand(await buildProgram({ timer: new PhaseTimer(), setExit: () => undefined }));
}
