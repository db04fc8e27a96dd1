import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentcellPaths } from '../paths.js';
import { defaultNetworkMode } from './assurance.js';
import { hashPolicy } from './canonical-hash.js';
import { mergeLayers, type Provenance } from './merge-layers.js';
import { policyError, readPolicyFile, validateLayer, type PolicyLayer } from './policy-layer.js';
import { PolicySchema, type Policy } from './schema.js';

export const PROJECT_POLICY_FILE = 'agentcell.toml';
export const BUILT_IN = 'built-in';

export interface PolicyRequest {
  workspace: string;
  /** Replaces the project's agentcell.toml. */
  policyFile?: string;
  /** Values from command-line flags, highest precedence. */
  flags?: Record<string, unknown>;
  paths: AgentcellPaths;
}

export interface ResolvedPolicy {
  policy: Policy;
  /** sha256 of the canonical JSON of `policy`; goes in every receipt. */
  hash: string;
  provenance: Provenance;
  /** The policy files that were read, lowest precedence first. */
  files: string[];
}

export function resolvePolicy(request: PolicyRequest): ResolvedPolicy {
  const layers: PolicyLayer[] = [];
  const userFile = join(request.paths.config, 'config.toml');
  if (existsSync(userFile)) layers.push(readPolicyFile(userFile));
  const projectFile = request.policyFile ?? join(request.workspace, PROJECT_POLICY_FILE);
  if (request.policyFile !== undefined || existsSync(projectFile)) layers.push(readPolicyFile(projectFile));
  if (request.flags && Object.keys(request.flags).length > 0)
    layers.push(validateLayer({ source: 'command line', values: request.flags }));

  const { values, provenance } = mergeLayers(layers);
  const result = PolicySchema.safeParse(values);
  if (!result.success) throw policyError(layers.map((l) => l.source).join(' + ') || BUILT_IN, result.error.issues);
  const policy = result.data;
  if (policy.network.mode === undefined) {
    policy.network.mode = defaultNetworkMode(policy.cell.mode);
    provenance.set('network.mode', [`${BUILT_IN} (default for mode ${policy.cell.mode})`]);
  }
  return {
    policy,
    hash: hashPolicy(policy),
    provenance,
    files: layers.filter((l) => l.source !== 'command line').map((l) => l.source),
  };
}

/** Where a key's effective value came from, for messages and `policy explain`. */
export function sourceOf(resolved: ResolvedPolicy, key: string): string {
  return resolved.provenance.get(key)?.join(' + ') ?? BUILT_IN;
}
