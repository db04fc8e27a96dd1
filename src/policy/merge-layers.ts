import type { PolicyLayer } from './policy-layer.js';
import { isReservedName, reservedKeysError } from './reserved-names.js';

/**
 * Lists that accumulate across layers instead of replacing: a project file adding one
 * allowed host must not silently drop the user's, and nothing may drop a mask.
 */
const ACCUMULATING_KEYS = new Set([
  'mount',
  'workspace.hide',
  'workspace.expose',
  'network.allow',
  'network.deny',
  'network.inspect',
  'network.upstream_ca',
  'network.rule',
]);

/** For each dotted key, the layers that set it (last one wins unless it accumulates). */
export type Provenance = Map<string, string[]>;

export interface MergedLayers {
  values: Record<string, unknown>;
  provenance: Provenance;
}

/**
 * Merges layers, lowest first, into new plain objects. Keys are written as own properties
 * and only own values are merged into: a reserved name (`__proto__`, `constructor`,
 * `prototype`) is refused here too, so a caller passing unvalidated layers can't reach
 * `Object.prototype` through the merge.
 */
export function mergeLayers(layers: readonly PolicyLayer[]): MergedLayers {
  const values: Record<string, unknown> = {};
  const provenance: Provenance = new Map();
  for (const layer of layers) mergeInto(values, layer.values, '', layer.source, provenance);
  return { values, provenance };
}

function mergeInto(
  target: Record<string, unknown>,
  source: Record<string, unknown>,
  prefix: string,
  origin: string,
  provenance: Provenance,
): void {
  for (const [key, value] of Object.entries(source)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isReservedName(key)) throw reservedKeysError(origin, [path]);
    const existing = Object.hasOwn(target, key) ? target[key] : undefined;
    if (isTable(value) && !ACCUMULATING_KEYS.has(path)) {
      const table = isTable(existing) ? existing : {};
      target[key] = table;
      mergeInto(table, value, path, origin, provenance);
      continue;
    }
    if (ACCUMULATING_KEYS.has(path) && Array.isArray(value)) {
      target[key] = [...(Array.isArray(existing) ? (existing as unknown[]) : []), ...(value as unknown[])];
      provenance.set(path, [...(provenance.get(path) ?? []), origin]);
      continue;
    }
    target[key] = value;
    provenance.set(path, [origin]);
  }
}

function isTable(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);
}
