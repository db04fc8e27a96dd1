/** Milliseconds spent in each phase of a run, in order; receipts carry them. */
export type Timings = Record<string, number>;

/** Records the time since the previous mark under each phase name. */
export class PhaseTimer {
  readonly timings: Timings = {};
  #last = now();

  constructor() {
    // Node's own start-up, until agentcell's code first ran.
    this.timings['startup'] = round(this.#last);
  }

  mark(phase: string): void {
    const time = now();
    this.timings[phase] = round(time - this.#last);
    this.#last = time;
  }
}

/** Milliseconds since the process started; `performance.now()` would load perf_hooks (~1 ms) on every run. */
function now(): number {
  return process.uptime() * 1000;
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
