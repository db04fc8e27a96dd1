import { AgentcellError } from '../errors.js';

/**
 * Names that reach JavaScript's object machinery when used as a key (`target[key] = …`
 * on `__proto__` writes the prototype; `constructor` and `prototype` lead to it). They are
 * never meaningful in a policy, whose tables come from untrusted files (a repo's
 * agentcell.toml), so they are refused wherever a name is a key: before any merge.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export function isReservedName(name: string): boolean {
  return RESERVED_NAMES.has(name);
}

/** Why a name can't be used, in the words every policy error uses. */
export function reservedNameProblem(name: string): string {
  return `"${name}" is not allowed as a name here (__proto__, constructor and prototype are reserved; rename it)`;
}

/** The dotted path of every reserved key in plain data (tables and arrays, as parsed TOML or JSON holds them). */
export function findReservedKeys(value: unknown, prefix = '', seen = new WeakSet<object>()): string[] {
  if (value === null || typeof value !== 'object' || value instanceof Date || seen.has(value)) return [];
  seen.add(value);
  const found: string[] = [];
  const entries = Array.isArray(value) ? value.map((v, i): [string, unknown] => [String(i), v]) : Object.entries(value);
  for (const [key, child] of entries) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (!Array.isArray(value) && isReservedName(key)) found.push(path);
    else found.push(...findReservedKeys(child, path, seen));
  }
  return found;
}

/** `POLICY_INVALID` for reserved keys, one line per key, like the schema's errors. */
export function reservedKeysError(source: string, paths: readonly string[]): AgentcellError {
  const lines = paths.map((path) => `${source}: key "${path}": ${reservedNameProblem(path.split('.').pop() ?? path)}`);
  return new AgentcellError('POLICY_INVALID', lines.join('\n'));
}

/** Throws `POLICY_INVALID` naming `source` when `values` holds a reserved key anywhere. */
export function assertNoReservedKeys(source: string, values: unknown): void {
  const found = findReservedKeys(values);
  if (found.length > 0) throw reservedKeysError(source, found);
}
