import { BUILT_IN, type ResolvedPolicy } from './resolve-policy.js';

export interface ExplainedValue {
  key: string;
  value: unknown;
  /** Layers that set it; ["built-in"] for defaults. */
  from: string[];
}

/** Every effective leaf value with its origin; `key` narrows to one key or table. */
export function explainPolicy(resolved: ResolvedPolicy, key?: string): ExplainedValue[] {
  const rows: ExplainedValue[] = [];
  flatten(resolved.policy, '', rows, resolved);
  if (key === undefined) return rows;
  return rows.filter((r) => r.key === key || r.key.startsWith(`${key}.`));
}

const LIST_KEYS = new Set(['mount']);

function flatten(value: unknown, prefix: string, rows: ExplainedValue[], resolved: ResolvedPolicy): void {
  const isTable = value !== null && typeof value === 'object' && !Array.isArray(value);
  if (isTable && !LIST_KEYS.has(prefix)) {
    const entries = Object.entries(value as Record<string, unknown>);
    for (const [k, v] of entries) flatten(v, prefix ? `${prefix}.${k}` : k, rows, resolved);
    return;
  }
  rows.push({ key: prefix, value, from: originOf(prefix, resolved) });
}

function originOf(key: string, resolved: ResolvedPolicy): string[] {
  return resolved.provenance.get(key) ?? [BUILT_IN];
}
