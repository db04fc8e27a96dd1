import { lstat, readdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Watches what a run writes to the host's disk and stops it at `[resources] disk`, or
 * when the filesystem under the cell's state falls below a reserve: max(1 GiB, 5% of
 * it). Sampling is a statfs every tick (no tree walk): the filesystem's used space
 * since its lowest point in the run bounds what the cell wrote from above. Only when that passes
 * the limit is the cell's own layer walked (`confirmDir`, the overlay's upper layer), so
 * other host activity on the same disk does not stop a run; the next walk waits until
 * the disk has grown by the room the walk found left, or for a periodic walk, paced by what
 * the last walk cost (about 2% of one core: a small layer every 50 ms, a big one up to every
 * 8 s). Without a layer of its own (direct workspace, copy driver) the statfs delta is the measure.
 */
export interface DiskWatchOptions {
  /** A directory on the filesystem the cell writes (the cell's state). */
  dir: string;
  limitBytes: number;
  confirmDir?: string;
  onHit: (detail: string) => void;
  tickMs?: number;
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

export async function startDiskWatch(options: DiskWatchOptions): Promise<DiskWatch> {
  const { dir, limitBytes, confirmDir, onHit, tickMs = 25 } = options;
  const first = await statfs(dir);
  const size = Number(first.blocks) * Number(first.bsize);
  // The lowest use seen: space freed meanwhile (a trash purge after a restore) does not hide the cell's writes.
  let baseline = used(first);
  const reserve = Math.max(GIB, Math.round(size * RESERVE_FRACTION));
  let nextWalkAt = limitBytes;
  let walkDue = Date.now() + MIN_WALK_EVERY_MS;
  let hit: string | undefined;
  let busy = false;

  const check = async (): Promise<void> => {
    if (hit !== undefined || busy) return;
    busy = true;
    try {
      const now = await statfs(dir);
      baseline = Math.min(baseline, used(now));
      const delta = used(now) - baseline;
      const free = Number(now.bavail) * Number(now.bsize);
      if (free < reserve && delta > RESERVE_SLACK) {
        hit = `the host filesystem under ${dir} is down to ${formatBytes(free)} free (agentcell keeps ${formatBytes(reserve)}: max(1 GiB, 5%))`;
      } else if (delta >= nextWalkAt || (confirmDir !== undefined && Date.now() >= walkDue)) {
        // Periodic walks too: space freed on the same disk while the cell writes (a purge, another
        // run's restore) can hide its writes from the statfs delta for as long as the next walk waits.
        const walkStart = Date.now();
        const written = confirmDir === undefined ? delta : await treeBytes(confirmDir);
        const cost = (Date.now() - walkStart) * WALK_COST_FACTOR;
        walkDue = Date.now() + Math.min(MAX_WALK_EVERY_MS, Math.max(MIN_WALK_EVERY_MS, cost));
        if (written >= limitBytes)
          hit = `the cell wrote ${formatBytes(written)}, past [resources] disk = ${formatBytes(limitBytes)}`;
        else nextWalkAt = delta + (limitBytes - written);
      } else if (delta < nextWalkAt - limitBytes) {
        nextWalkAt = delta + limitBytes;
      }
      if (hit !== undefined) onHit(hit);
    } catch {
      // A sample that fails (the dir removed at the end of the run) is skipped.
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void check(), tickMs);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      while (busy) await new Promise((resolve) => setTimeout(resolve, 5));
      await check();
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
