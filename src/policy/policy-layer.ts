import { readFileSync } from 'node:fs';
import { parse, TomlError } from 'smol-toml';
import type { core } from 'zod/mini';
import { AgentcellError } from '../errors.js';
import { assertNoReservedKeys } from './reserved-names.js';
import { PolicySchema } from './schema.js';

/** One source of policy values, lowest first: built-in < user < project < flags. */
export interface PolicyLayer {
  /** Where the values came from: "built-in", a file path, or "command line". */
  source: string;
  values: Record<string, unknown>;
}

/** Reads and validates a TOML policy file; errors name the file, the key and what was expected. */
export function readPolicyFile(path: string): PolicyLayer {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new AgentcellError('POLICY_NOT_FOUND', `${path}: cannot read policy file (${(cause as Error).message})`, {
      cause,
    });
  }
  let values: Record<string, unknown>;
  try {
    values = parse(text);
  } catch (cause) {
    if (cause instanceof TomlError)
      throw new AgentcellError(
        'POLICY_INVALID',
        `${path}:${cause.line}:${cause.column}: not valid TOML: ${cause.message.split('\n')[0] ?? ''}`,
        { cause },
      );
    throw cause;
  }
  return validateLayer({ source: path, values });
}

/**
 * Checks a layer on its own so an error points at the layer that holds it. Reserved names
 * (`__proto__`, …) go first: zod's records drop a `__proto__` key unseen, and a merge
 * would write through it.
 */
export function validateLayer(layer: PolicyLayer): PolicyLayer {
  assertNoReservedKeys(layer.source, layer.values);
  const result = PolicySchema.safeParse(layer.values, { reportInput: true });
  if (!result.success) throw policyError(layer.source, result.error.issues);
  return layer;
}

export function policyError(source: string, issues: readonly core.$ZodIssue[]): AgentcellError {
  const lines = issues.map((issue) => `${source}: ${describeIssue(issue)}`);
  return new AgentcellError('POLICY_INVALID', lines.join('\n'));
}

function describeIssue(issue: core.$ZodIssue): string {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const where = key ? `in [${key}] ` : '';
    return `unknown key ${where}${issue.keys.map((k) => `"${k}"`).join(', ')} (check the spelling; unknown keys are refused)`;
  }
  return `key "${key || '(top level)'}": ${expectation(issue)}${got(issue.input)}`;
}

/** What the key needed, in words (zod/mini carries no English messages of its own). */
function expectation(issue: core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join('|')}`;
    case 'invalid_type':
      return `expected ${issue.expected === 'int' ? 'a whole number' : issue.expected}`;
    case 'too_small':
      return issue.origin === 'string'
        ? 'expected a non-empty string'
        : `expected a value above ${String(issue.minimum)}`;
    case 'invalid_union':
      return 'expected a string or a number';
    case 'invalid_key':
      return 'invalid name';
    default:
      return issue.message;
  }
}

function got(input: unknown): string {
  if (input === undefined || (typeof input === 'object' && input !== null)) return '';
  return `, got ${JSON.stringify(input)}`;
}
