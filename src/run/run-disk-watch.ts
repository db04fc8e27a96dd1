import { lstatSync, readdirSync } from 'node:fs';
import { lstat, readdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Watches what a run writes to the host's disk and stops it at `[resources] disk`, or
 * when the filesystem under the cell's state falls below a reserve: max(1 GiB, 5% of
 * it). Sampling is a statfs (no tree walk): the filesystem's used space since its lowest
 * point in the run bounds what the cell wrote from above. Only when that passes the limit
 * is the cell's own layer walked (`confirmDir`, the overlay's upper layer), so other host
 * activity on the same disk does not stop a run; the next walk waits until the disk has
 * grown by the room the walk found left, or for a periodic walk (space freed on the same
 * disk can hide the cell's writes from the statfs delta). Without a layer of its own
 * (direct workspace, copy driver) the statfs delta is the measure.
 *
 * Both are paced by the room left: a cell writing at `FAST_WRITER_BYTES_PER_S` cannot use
 * up the room before the next sample, so near a bound it is sampled every 25 ms and far
 * from it (an idle agent under the default 8 GiB) twice a second, with a walk every 2 s at
 * most, and never more often than what the last walk cost allows (about 2% of one core).
 * Measured on an idle session: a fixed 25 ms tick with a walk every 50 ms cost 1–2.5% of a
 * core per session, most of all that 20 idle sessions kept busy.
 */
export interface DiskWatchOptions {
  /** A directory on the filesystem the cell writes (the cell's state). */
  dir: string;
  limitBytes: number;
  confirmDir?: string;
  onHit: (detail: string) => void;
}

export interface DiskWatch {
  /** Stops sampling; checks once more, for a writer faster than a tick. Resolves the detail if a bound was hit. */
  stop(): Promise<string | undefined>;
}

const GIB = 1024 ** 3;
const RESERVE_FRACTION = 0.05;
/** The reserve only stops a run that is writing (not one that merely started on a full disk). */
const RESERVE_SLACK = 16 * 1024 ** 2;
const MIN_WALK_EVERY_MS = 50;
const MAX_WALK_EVERY_MS = 8000;
/** The next periodic walk waits this many times as long as the last one took. */
const WALK_COST_FACTOR = 50;
const MIN_TICK_MS = 25;
const MAX_TICK_MS = 500;
/**
 * The write rate pacing assumes: page-cache speed on a fast machine. A faster writer
 * passes a bound by what it writes beyond this rate before the next sample, as any writer
 * does by what it writes in one 25 ms tick near the bound.
 */
export const FAST_WRITER_BYTES_PER_S = 4 * GIB;

/** How long until the next statfs sample, given the room left before a bound (or a walk) is due. */
export function sampleDelayMs(roomBytes: number): number {
  return clamp((Math.max(0, roomBytes) / FAST_WRITER_BYTES_PER_S) * 1000, MIN_TICK_MS, MAX_TICK_MS);
}

/** How long until the next periodic walk of the layer: paced by its cost and by the room it found left. */
export function walkDelayMs(walkCostMs: number, roomBytes: number): number {
  const byRoom = Math.min(2000, (Math.max(0, roomBytes) / FAST_WRITER_BYTES_PER_S) * 1000);
  return clamp(Math.max(walkCostMs * WALK_COST_FACTOR, byRoom), MIN_WALK_EVERY_MS, MAX_WALK_EVERY_MS);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

export async function startDiskWatch(options: DiskWatchOptions): Promise<DiskWatch> {
  const { dir, limitBytes, confirmDir, onHit } = options;
  const first = await statfs(dir);
  const size = Number(first.blocks) * Number(first.bsize);
  // The lowest use seen: space freed meanwhile (a trash purge after a restore) does not hide the cell's writes.
  let baseline = used(first);
  const reserve = Math.max(GIB, Math.round(size * RESERVE_FRACTION));
  let nextWalkAt = limitBytes;
  let walkDue = Date.now() + MIN_WALK_EVERY_MS;
  let hit: string | undefined;
  let busy = false;

  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  /** One sample; returns the room left before the nearest bound or walk. `last`: see stop. */
  const check = async (last = false): Promise<number> => {
    if (hit !== undefined || busy) return 0;
    busy = true;
    try {
      const now = await statfs(dir);
      baseline = Math.min(baseline, used(now));
      const delta = used(now) - baseline;
      const free = Number(now.bavail) * Number(now.bsize);
      if (free < reserve && delta > RESERVE_SLACK) {
        hit = `the host filesystem under ${dir} is down to ${formatBytes(free)} free (agentcell keeps ${formatBytes(reserve)}: max(1 GiB, 5%))`;
      } else if (delta >= nextWalkAt || (confirmDir !== undefined && Date.now() >= walkDue)) {
        const walkStart = Date.now();
        const written =
          confirmDir === undefined ? delta : last ? treeBytesSync(confirmDir) : await treeBytes(confirmDir);
        walkDue = Date.now() + walkDelayMs(Date.now() - walkStart, limitBytes - written);
        if (written >= limitBytes)
          hit = `the cell wrote ${formatBytes(written)}, past [resources] disk = ${formatBytes(limitBytes)}`;
        else nextWalkAt = delta + (limitBytes - written);
      } else if (delta < nextWalkAt - limitBytes) {
        nextWalkAt = delta + limitBytes;
      }
      if (hit !== undefined) onHit(hit);
      return Math.min(nextWalkAt - delta, free - reserve);
    } catch {
      // A sample that fails (the dir removed at the end of the run) is skipped.
      return 0;
    } finally {
      busy = false;
    }
  };
  const schedule = (delayMs: number): void => {
    if (stopped || hit !== undefined) return;
    timer = setTimeout(() => void check().then((room) => schedule(sampleDelayMs(room))), delayMs);
    timer.unref();
  };
  schedule(MIN_TICK_MS);
  return {
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      while (busy) await new Promise((resolve) => setTimeout(resolve, 5));
      // The command has ended: nothing in the cell waits on this process's event loop, so the
      // last walk goes synchronously (30,000 files in the layer: ~0.2 s, ~1.2 s an lstat promise
      // at a time, which keeps the event loop free while the command runs).
      await check(true);
      return hit;
    },
  };
}

function used(s: { blocks: number | bigint; bfree: number | bigint; bsize: number | bigint }): number {
  return (Number(s.blocks) - Number(s.bfree)) * Number(s.bsize);
}

/** Bytes allocated under a directory (as `du`), without following symlinks; unreadable parts count 0. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await treeBytes(path);
    else
      try {
        total += (await lstat(path)).blocks * 512;
      } catch {
        // gone meanwhile
      }
  }
  return total;
}

function treeBytesSync(dir: string): number {
  let total = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    total += entry.isDirectory()
      ? treeBytesSync(path)
      : (lstatSync(path, { throwIfNoEntry: false })?.blocks ?? 0) * 512;
  }
  return total;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
