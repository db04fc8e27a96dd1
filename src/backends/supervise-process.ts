import type { ChildProcess } from 'node:child_process';
import { onAbort } from '../_internal/on-abort.js';
import { constants } from 'node:os';
import type { RunOutcome } from './backend.js';

export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = [
  'SIGINT',
  'SIGTERM',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR1',
  'SIGUSR2',
];
/** After a timeout's SIGTERM, how long the command gets before the cell is killed. */
export const KILL_GRACE_MS = 5000;
export const TIMEOUT_EXIT_CODE = 124;

export interface SuperviseOptions {
  tty: boolean;
  timeoutMs?: number;
  /** The command's host pid, where signals are forwarded (the backend knows how to find it). */
  commandPid: () => number | undefined;
  /** Aborted: the whole cell is killed at once. */
  stop?: AbortSignal | undefined;
}

/**
 * Waits for a backend process while forwarding agentcell's signals to the command in
 * the cell and enforcing the timeout. With a terminal, Ctrl-C already reaches the
 * command through the foreground process group, so SIGINT is not forwarded twice.
 */
export function superviseProcess(child: ChildProcess, options: SuperviseOptions): Promise<RunOutcome> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;

    const signalCommand = (signal: NodeJS.Signals): void => {
      const pid = options.commandPid();
      try {
        if (pid !== undefined) process.kill(pid, signal);
        else child.kill(signal);
      } catch {
        // already exited
      }
    };
    const killCell = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const handlers = new Map<NodeJS.Signals, () => void>();
    for (const signal of FORWARDED_SIGNALS) {
      const handler = (): void => {
        if (options.tty && signal === 'SIGINT') return;
        signalCommand(signal);
      };
      handlers.set(signal, handler);
      process.on(signal, handler);
    }
    const timeout =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            signalCommand('SIGTERM');
            killTimer = setTimeout(killCell, KILL_GRACE_MS);
          }, options.timeoutMs);

    const stopListening = onAbort(options.stop, killCell);
    const cleanup = (): void => {
      stopListening();
      for (const [signal, handler] of handlers) process.off(signal, handler);
      if (timeout) clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
    };
    child.once('error', (error) => {
      cleanup();
      reject(error);
    });
    child.once('exit', (code, signal) => {
      cleanup();
      const outcome: RunOutcome = {
        exitCode: timedOut ? TIMEOUT_EXIT_CODE : (code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)),
        timedOut,
      };
      if (signal) outcome.signal = signal;
      if (child.pid !== undefined) outcome.pid = child.pid;
      resolve(outcome);
    });
  });
}
