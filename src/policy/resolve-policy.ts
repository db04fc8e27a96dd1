import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentcellPaths } from '../paths.js';
import { defaultNetworkMode } from './assurance.js';
import { canonicalJson, sha256 } from '../_internal/canonical-hash.js';
import { mergeLayers, type Provenance } from './merge-layers.js';
import { defaultPolicy } from './default-policy.js';
import type { PolicyLayer } from './policy-layer.js';
import type { Policy } from './schema.js';

export const PROJECT_POLICY_FILE = 'agentcell.toml';
export const BUILT_IN = 'built-in';

export interface PolicyRequest {
  workspace: string;
  /** Replaces the project's agentcell.toml. */
  policyFile?: string;
  /** Values from command-line flags, highest precedence. */
  flags?: Record<string, unknown>;
  paths: AgentcellPaths;
  /**
   * The layer an agent adapter adds when the policy names an agent (src/agents/), given
   * the agent's name and the secrets the files declare; it goes just above built-in.
   */
  agentLayer?: (name: string, declaredSecrets: ReadonlySet<string>, networkMode: unknown) => PolicyLayer;
}

export interface ResolvedPolicy {
  policy: Policy;
  /** sha256 of the canonical JSON of `policy`; goes in every receipt. */
  hash: string;
  provenance: Provenance;
  /** The policy files that were read, lowest precedence first. */
  files: string[];
}

export async function resolvePolicy(request: PolicyRequest): Promise<ResolvedPolicy> {
  const userFile = join(request.paths.config, 'config.toml');
  const projectFile = request.policyFile ?? join(request.workspace, PROJECT_POLICY_FILE);
  const files = [
    ...(existsSync(userFile) ? [userFile] : []),
    ...(request.policyFile !== undefined || existsSync(projectFile) ? [projectFile] : []),
  ];
  const flags = request.flags && Object.keys(request.flags).length > 0 ? request.flags : undefined;

  let policy: Policy;
  let provenance: Provenance = new Map();
  if (files.length === 0 && flags === undefined) {
    policy = defaultPolicy();
  } else {
    // The validator loads only when there is something to validate.
    const { policyError, readPolicyFile, validateLayer } = await import('./policy-layer.js');
    const { PolicySchema } = await import('./schema.js');
    const layers: PolicyLayer[] = files.map(readPolicyFile);
    const stated = [...layers, ...(flags ? [{ source: '', values: flags }] : [])];
    const agent = request.agentLayer && lastValue(stated, 'agent', 'name');
    if (typeof agent === 'string' && request.agentLayer)
      layers.unshift(request.agentLayer(agent, declaredSecrets(layers), lastValue(stated, 'network', 'mode')));
    if (flags) layers.push(validateLayer({ source: 'command line', values: flags }));
    const merged = mergeLayers(layers);
    const result = PolicySchema.safeParse(merged.values);
    if (!result.success) throw policyError(layers.map((l) => l.source).join(' + '), result.error.issues);
    policy = result.data;
    provenance = merged.provenance;
  }
  if (policy.network.mode === undefined) {
    policy.network.mode = defaultNetworkMode(policy.cell.mode);
    provenance.set('network.mode', [`${BUILT_IN} (default for mode ${policy.cell.mode})`]);
  }
  return { policy, hash: `sha256:${sha256(canonicalJson(policy))}`, provenance, files };
}

/** A value as the layers set it, the last one winning (before validation). */
function lastValue(layers: readonly PolicyLayer[], table: string, key: string): unknown {
  let value: unknown;
  for (const layer of layers) {
    const values = layer.values[table] as Record<string, unknown> | undefined;
    if (values?.[key] !== undefined) value = values[key];
  }
  return value;
}

function declaredSecrets(layers: readonly PolicyLayer[]): Set<string> {
  return new Set(
    layers.flatMap((l) => Object.keys((l.values['secrets'] as Record<string, unknown> | undefined) ?? {})),
  );
}

/** Where a key's effective value came from, for messages and `policy explain`. */
export function sourceOf(resolved: ResolvedPolicy, key: string): string {
  return resolved.provenance.get(key)?.join(' + ') ?? BUILT_IN;
}
