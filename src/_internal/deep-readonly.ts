/**
 * A value nobody can change through this type: every property readonly, every array a
 * `ReadonlyArray`, every map a `ReadonlyMap`, all the way down. Functions pass through.
 */
export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends ReadonlyMap<infer K, infer V>
    ? ReadonlyMap<K, DeepReadonly<V>>
    : T extends ReadonlyArray<infer U>
      ? ReadonlyArray<DeepReadonly<U>>
      : T extends object
        ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
        : T;

/**
 * Freezes a plain-data value and every object and array in it, so a write through a cast
 * or from plain JavaScript throws too (ES modules run in strict mode). A Map's entries
 * stay settable at runtime: its type is the guard there.
 */
export function deepFreeze<T>(value: T): DeepReadonly<T> {
  freeze(value, new WeakSet());
  return value as DeepReadonly<T>;
}

/**
 * A deep, unfrozen copy of plain data, for an API whose types take the mutable kind.
 * Strings are shared, not copied (structuredClone copies them): they are immutable, and
 * a run's copy of its egress plan lives as long as the run (its upstream CA texts are
 * ~0.4 MB in every session's supervisor). Anything but plain objects, arrays and maps is
 * structuredClone'd as before.
 */
export function mutableCopy<T>(value: DeepReadonly<T>): T {
  return copy(value) as T;
}

function copy(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(copy);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [copy(k), copy(v)]));
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return structuredClone(value);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copy(v)]));
}

function freeze(value: unknown, seen: WeakSet<object>): void {
  // A typed array with elements cannot be frozen (TypeError): plain data has none.
  if (typeof value !== 'object' || value === null || seen.has(value) || ArrayBuffer.isView(value)) return;
  seen.add(value);
  Object.freeze(value);
  for (const key of Reflect.ownKeys(value)) freeze((value as Record<PropertyKey, unknown>)[key], seen);
  if (value instanceof Map) for (const entry of value.values()) freeze(entry, seen);
}
