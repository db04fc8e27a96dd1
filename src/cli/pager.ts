import { spawn } from 'node:child_process';

export interface Pager {
  write: (text: string) => void;
  /** Resolves when the pager has exited (the user quit, or the input ended and was read). */
  closed: Promise<void>;
  /** No more input: the pager stays open on what it has until the user quits. */
  end(): void;
}

/**
 * `less -R` reading from a pipe, when stdout is a terminal; none otherwise (the caller
 * prints plainly), or when `less` is missing. With `+F` it follows, like `tail -f`; the
 * caller ends the input on Ctrl-C, so less then scrolls and searches what came (less
 * can't be quit while its pipe is open and idle, so the writer must end it).
 */
export function openPager(options: { follow: boolean }): Pager | undefined {
  if (!process.stdout.isTTY) return undefined;
  const child = spawn('less', ['-R', ...(options.follow ? ['+F'] : [])], { stdio: ['pipe', 'inherit', 'inherit'] });
  child.once('error', () => undefined);
  if (child.pid === undefined) return undefined;
  const closed = new Promise<void>((resolve) => {
    child.once('exit', () => resolve()); // not 'close': our end of its stdin stays open
  });
  // A pager that quit: what is still written goes nowhere (EPIPE is expected, not an error).
  child.stdin.on('error', () => undefined);
  return {
    write: (text) => void child.stdin.write(`${text}\n`),
    closed,
    end: () => child.stdin.end(),
  };
}
