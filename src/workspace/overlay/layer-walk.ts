import { readdirSync } from 'node:fs';

/** An entry of a walk with its stats, or, without them, a directory the host cannot list (a mode the cell set). */
export interface WalkStep<S> {
  path: string;
  full: string;
  s: S | undefined;
}

/**
 * Every entry under `dir`, sorted, depth first, each directory's entries right after it,
 * stat'ed by `stat` (an lstat, plain or bigint). One generator over a stack of listings: a
 * recursive one passes each entry up through a generator per level.
 */
export function* walkLayer<S extends { isDirectory(): boolean }>(
  dir: string,
  stat: (full: string) => S,
): Generator<WalkStep<S>> {
  const listings: { rel: string; names: string[]; next: number }[] = [];
  /** Lists a directory onto the stack, or gives the step for one the host cannot list. */
  const list = (rel: string): WalkStep<S> | undefined => {
    // Paths by concatenation, not join(): names from readdir hold no '/' and are never '.' or '..'.
    const here = rel ? `${dir}/${rel}` : dir;
    try {
      listings.push({ rel, names: readdirSync(here).sort(), next: 0 });
      return undefined;
    } catch {
      return { path: rel, full: here, s: undefined }; // its entry above still counts
    }
  };
  const top = list('');
  if (top) yield top;
  while (listings.length > 0) {
    const at = listings[listings.length - 1]!;
    const name = at.names[at.next++];
    if (name === undefined) {
      listings.pop();
      continue;
    }
    const path = at.rel ? `${at.rel}/${name}` : name;
    const full = `${dir}/${path}`;
    const s = stat(full);
    yield { path, full, s };
    const unlistable = s.isDirectory() ? list(path) : undefined;
    if (unlistable) yield unlistable;
  }
}

/** Steps taken between two turns of the event loop (see loopTurns). */
const STEPS_PER_TURN = 256;

/**
 * For a walk that lets the event loop run (a turn's walks run in agentcell's process while
 * the gateway relays the cell's traffic on the same loop): called after each step, it gives
 * every STEPS_PER_TURN steps a promise of the loop's next turn to await, else nothing (an
 * await per step would cost a walk of 30,000 entries ~150 ms).
 */
export function loopTurns(): () => Promise<void> | undefined {
  let count = 0;
  return () => (++count % STEPS_PER_TURN === 0 ? new Promise((resolve) => setImmediate(resolve)) : undefined);
}
