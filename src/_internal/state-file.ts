import { readFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type * as z from 'zod/mini';
import { AgentcellError, type ErrorCode } from '../errors.js';
import { writeFileAtomic, type WriteOptions } from './atomic-file.js';

/**
 * agentcell's state files (cell.json, layers.json, receipts, the run journal, anchors,
 * image records…): JSON written whole through atomic-file.ts and read back through the
 * zod schema of the layer that owns the file. A file that does not parse or does not
 * match is never treated as missing: that would let the next write replace it and lose
 * what it held. It is an error naming the file, what is wrong and what to do.
 * Caches are the exception (see readJsonCache).
 */
export interface StateFileKind<S extends z.ZodMiniType> {
  schema: S;
  /** What the file is, for messages: `the cell record`. */
  what: string;
  /** What the user can do about a damaged one; given the file's path. */
  fix: (path: string) => string;
  /** The error a damaged one is (default STATE_CORRUPT). */
  code?: ErrorCode;
}

export interface StateWriteOptions extends WriteOptions {
  /** Default 0600. */
  mode?: number;
}

/** What to do about a damaged file in a cell's state dir (`…/cells/NAME/…`), the cell named from the path. */
export function cellStateFix(path: string): string {
  const isCell = (dir: string): boolean => basename(dirname(dir)) === 'cells';
  let dir = dirname(path);
  while (!isCell(dir) && dirname(dir) !== dir) dir = dirname(dir);
  const cell = isCell(dir) ? basename(dir) : 'NAME';
  return `Restore it from a backup, or remove the cell: agentcell cell rm ${cell} --force (its pending changes are lost)`;
}

/** The file's content, checked; undefined when it does not exist. */
export function readStateFile<S extends z.ZodMiniType>(path: string, kind: StateFileKind<S>): z.output<S> | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error; // the host's state (EACCES, ENOTDIR…): the CLI names the path (pathErrorOf)
  }
  return parseStateFile(path, text, kind);
}

/** `text`, read from `path`, checked against the file's schema. */
export function parseStateFile<S extends z.ZodMiniType>(
  path: string,
  text: string,
  kind: StateFileKind<S>,
): z.output<S> {
  const problem = stateFileProblem(text, kind.schema);
  if (problem.ok) return problem.value;
  throw damagedStateFile(path, kind, problem.why);
}

/** The error for a damaged state file: which, what is wrong, what to do. */
export function damagedStateFile<S extends z.ZodMiniType>(
  path: string,
  kind: StateFileKind<S>,
  why: string,
): AgentcellError {
  return new AgentcellError(
    kind.code ?? 'STATE_CORRUPT',
    `${path} (${kind.what}) is damaged: ${why}. ${kind.fix(path)}`,
  );
}

/** What is wrong with `text` as a file of `schema`, in words, or its checked value. */
export function stateFileProblem<S extends z.ZodMiniType>(
  text: string,
  schema: S,
): { ok: true; value: z.output<S> } | { ok: false; why: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, why: text.trim() === '' ? 'empty' : `not valid JSON (${(error as Error).message})` };
  }
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return { ok: true, value: result.data };
  return { ok: false, why: describeIssues(result.error.issues) };
}

/**
 * Writes `value` as the whole file (temp, fsync, rename; mode 0600 unless given). A value
 * its own schema refuses is a bug: it is refused before anything is written.
 */
export function writeStateFile<S extends z.ZodMiniType>(
  path: string,
  kind: StateFileKind<S>,
  value: z.input<S>,
  options: StateWriteOptions = {},
): void {
  writeFileAtomic(path, stateFileText(path, kind, value), options.mode ?? 0o600, options);
}

/** What a state file holding `value` says, checked against its schema (refused before anything is written). */
export function stateFileText<S extends z.ZodMiniType>(
  path: string,
  kind: StateFileKind<S>,
  value: z.input<S>,
): string {
  const result = kind.schema.safeParse(value, { reportInput: true });
  if (!result.success)
    throw new AgentcellError(
      'INTERNAL',
      `refusing to write a malformed ${kind.what} to ${path}: ${describeIssues(result.error.issues)}`,
    );
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * A cache's content, or undefined when it is missing, unreadable, not JSON or not of
 * `schema`. Caches only save work: a damaged one is silently rebuilt (the next write
 * replaces it), never an error. Also for other programs' files read on a best-effort basis.
 */
export function readJsonCache<S extends z.ZodMiniType>(path: string, schema: S): z.output<S> | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const found = stateFileProblem(text, schema);
  return found.ok ? found.value : undefined;
}

/** zod's issues as one line: `layers.0.seq: expected number, got "x"; unknown key "extra"`. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 5)
    .map((issue) => {
      const at = issue.path.length > 0 ? `${issue.path.map(String).join('.')}: ` : '';
      return at + describeIssue(issue);
    })
    .concat(issues.length > 5 ? [`and ${issues.length - 5} more`] : [])
    .join('; ');
}

/** zod/mini carries no English messages of its own. */
function describeIssue(issue: z.core.$ZodIssue): string {
  const got = 'input' in issue && issue.input !== undefined ? `, got ${shortJson(issue.input)}` : ', missing';
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown key ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    case 'invalid_type':
      return `expected ${issue.expected === 'int' ? 'a whole number' : issue.expected}${got}`;
    case 'invalid_value':
      return `expected ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}${got}`;
    case 'invalid_format':
      return `expected ${issue.format === 'regex' ? `to match ${String(issue.pattern)}` : `a ${issue.format}`}${got}`;
    case 'too_small':
      return `expected at least ${String(issue.minimum)}${got}`;
    case 'too_big':
      return `expected at most ${String(issue.maximum)}${got}`;
    case 'invalid_union':
      return `matches none of the allowed shapes${got}`;
    default:
      return `${issue.message}${got}`;
  }
}

function shortJson(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
