const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "512M", "2G", "2GiB", 1048576 → bytes; undefined when unparseable. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!match) return undefined;
  const unit = SIZE_UNITS[(match[2] ?? '').toLowerCase()];
  return unit === undefined ? undefined : Math.round(Number(match[1]) * unit);
}

/** "90s", "30m", "1h", "1500ms", 45 (seconds) → milliseconds; undefined when unparseable. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return value > 0 ? Math.round(value * 1000) : undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(value.trim());
  if (!match) return undefined;
  const ms = Math.round(Number(match[1]) * (DURATION_UNITS[match[2] ?? 's'] ?? 1000));
  return ms > 0 ? ms : undefined;
}
