/** Milliseconds spent in each phase of a run, in order; receipts carry them. */
export type Timings = Record<string, number>;

/** Records the time since the previous mark under each phase name. */
export class PhaseTimer {
  readonly timings: Timings = {};
  #last = performance.now();

  constructor() {
    // Node's own start-up, until agentcell's code first ran.
    this.timings['startup'] = round(this.#last);
  }

  mark(phase: string): void {
    const now = performance.now();
    this.timings[phase] = round(now - this.#last);
    this.#last = now;
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
