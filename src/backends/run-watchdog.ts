import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';

/**
 * Cleans up after a run if agentcell dies before it can (SIGKILL, OOM): a container
 * outlives the engine CLI that started it, and a host-side overlay mount outlives both.
 *
 * The watchdog is a shell in a session of its own (a terminal's ^C doesn't reach it)
 * that reads one line from a pipe only agentcell holds the other end of. `disarm()`
 * writes "done" and the watchdog exits; if agentcell dies first, the read sees end of
 * file and the watchdog runs `commands`, in order, whatever each one's exit status.
 * The commands are argv arrays, quoted here; nothing of them reaches a shell unquoted.
 */
export interface RunWatchdog {
  disarm(): void;
}

export function startRunWatchdog(commands: readonly (readonly string[])[], env: NodeJS.ProcessEnv): RunWatchdog {
  const cleanup = commands.map((argv) => `${argv.map(shellQuote).join(' ')} >/dev/null 2>&1`).join('; ');
  const script = `read -r line; [ "$line" = done ] && exit 0; ${cleanup || ':'}`;
  const child = spawn('/bin/sh', ['-c', script, 'agentcell-watchdog'], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    env,
  });
  child.on('error', () => undefined); // no /bin/sh: nothing to watch with, the run goes on
  child.unref();
  const pipe = child.stdin as Socket | null;
  pipe?.on('error', () => undefined); // the watchdog gone already
  pipe?.unref(); // it must not keep agentcell alive
  return {
    disarm: () => {
      pipe?.end('done\n');
    },
  };
}

function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}
