import { writeSync } from 'node:fs';
import type { PhaseTimer } from '../run/phase-timer.js';

export interface JsonFlag {
  json?: boolean;
}

export interface DryRunFlag {
  dryRun?: boolean;
}

/** What every command module gets from the entry point. */
export interface CliContext {
  /** Started before anything else so the phases add up to the whole run. */
  timer: PhaseTimer;
  setExit: (code: number) => void;
}

export const print = (text: string): void => void process.stdout.write(`${text}\n`);
export const printJson = (value: unknown): void => print(JSON.stringify(value, null, 2));
// Short notes go straight to fd 2: creating process.stderr costs a few ms of every run's start.
export const note = (text: string): void => void writeSync(2, `${text}\n`);
