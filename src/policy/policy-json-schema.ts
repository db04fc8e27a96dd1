import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as z from 'zod/mini';
import { RESERVED_NAMES } from './reserved-names.js';
import { envName, PolicySchema, resolveName } from './schema.js';

/** Where the schema sits in the package; `init` points editors at it. */
export const POLICY_SCHEMA_FILE = 'schemas/agentcell.schema.json';

/**
 * The JSON Schema of `agentcell.toml`, generated from the zod schema the policy loader
 * validates with, so editors (taplo, VS Code's Even Better TOML) check the same keys
 * agentcell does. Draft-07: what taplo's validator and VS Code support. Rules zod checks
 * in code (host patterns, sizes, durations) are not representable and stay agentcell's.
 */
export function policyJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(PolicySchema, {
    io: 'input',
    target: 'draft-07',
    unrepresentable: 'any',
    // The names that become object keys refuse __proto__, constructor and prototype, as the loader does.
    override: ({ zodSchema, jsonSchema }) => {
      if (zodSchema === envName || zodSchema === resolveName) jsonSchema.not = { enum: [...RESERVED_NAMES] };
    },
  });
  return {
    ...schema,
    $id: 'https://agentcell.dev/schemas/agentcell.schema.json',
    title: 'agentcell.toml',
    description:
      'agentcell policy: cell, workspace, mounts, network, secrets, resources, agent (see agentcell policy explain)',
  };
}

/**
 * The shipped schema as a file: URL for the `#:schema` directive `init` writes, found
 * beside this install (from dist/ in the bundled CLI, dist/src/policy/ in the library);
 * undefined when the package was built without it.
 */
export function policySchemaUrl(): string | undefined {
  for (const relative of [`../${POLICY_SCHEMA_FILE}`, `../../../${POLICY_SCHEMA_FILE}`]) {
    const url = new URL(relative, import.meta.url);
    if (existsSync(fileURLToPath(url))) return url.href;
  }
  return undefined;
}
