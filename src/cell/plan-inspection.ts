import { readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import type * as Tls from 'node:tls';
import type { CellSpec, ExtraMount } from '../backends/backend.js';
import { cellCaFiles, systemBundleOf, trustEnvironment, trustMounts } from '../egress/cell/cell-trust.js';
import type { RunInspection } from '../egress/gateway/run-gateway.js';
import { AgentcellError } from '../errors.js';
import type { DeepReadonly } from '../_internal/deep-readonly.js';
import type { Policy } from '../policy/schema.js';
import { proxySecrets } from './resolve-secrets.js';

export interface InspectionPlan {
  /** For the gateway (holds secret values: never print it). */
  run: RunInspection;
  /** The trust variables for the cell (SSL_CERT_FILE, node's, …). */
  env: Record<string, string>;
  /** Read-only binds of the cell CA and the trust bundle. */
  mounts: ExtraMount[];
}

/**
 * TLS inspection for a gateway run, when the policy asks for it (`[network] inspect`,
 * `[[network.rule]]`, or a secret with `inject = "proxy"`): where the cell CA lives
 * (`<cellDir>/egress/ca`, made when the run starts, so a dry run writes nothing), how
 * the cell trusts it, what upstreams must chain to, and the proxy secrets read on the
 * host. Undefined when nothing is inspected.
 */
export function planInspection(
  policy: Policy,
  context: {
    cellDir: string;
    rootfs: CellSpec['rootfs'];
    hostEnv: NodeJS.ProcessEnv;
    workspace: string;
    /** The cell's NODE_OPTIONS without the trust variables (its policy's, its agent's). */
    nodeOptions?: string | undefined;
  },
): InspectionPlan | undefined {
  if (policy.network.inspect.length === 0 && policy.network.rule.length === 0 && proxySecretNames(policy).length === 0)
    return undefined;
  const ca = cellCaFiles(join(context.cellDir, 'egress', 'ca'));
  const systemBundle = systemBundleOf(context.rootfs)?.onHost;
  return {
    run: {
      ca,
      systemBundle,
      upstreamCa: upstreamTrust(policy.network.upstream_ca, context.workspace),
      secrets: proxySecrets(policy, context.hostEnv),
    },
    env: trustEnvironment({
      systemBundle: systemBundle !== undefined,
      ...(context.nodeOptions !== undefined ? { nodeOptions: context.nodeOptions } : {}),
    }),
    mounts: trustMounts(ca, context.rootfs),
  };
}

/** Proxy secrets and L7 rules only the gateway can apply: refused without it rather than silently dropped. */
export function refuseWithoutGateway(policy: Policy): void {
  const needs = [
    ...proxySecretNames(policy).map((name) => `secrets.${name}.inject = "proxy"`),
    ...(policy.network.rule.length > 0 ? ['[[network.rule]]'] : []),
  ];
  if (needs.length > 0)
    throw new AgentcellError(
      'POLICY_INVALID',
      `${needs.join(', ')} need network.mode = "allowlist" (the egress gateway applies them); network.mode is "${policy.network.mode ?? 'none'}"`,
    );
}

function proxySecretNames(policy: Policy): string[] {
  return Object.entries(policy.secrets)
    .filter(([, secret]) => secret.inject === 'proxy')
    .map(([name]) => name);
}

/** Node's roots, the host's system bundle (the gateway runs on the host), and each `upstream_ca` file (relative to the workspace). */
function upstreamTrust(files: readonly string[], workspace: string): string[] {
  // Required here: node:tls at the top would load TLS into every run, inspecting or not.
  const { rootCertificates } = createRequire(import.meta.url)('node:tls') as typeof Tls;
  const pems = [...rootCertificates];
  const system = systemBundleOf({ kind: 'host' });
  if (system !== undefined) pems.push(readFileSync(system.onHost, 'utf8'));
  for (const file of files) {
    const path = isAbsolute(file) ? file : resolve(workspace, file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (cause) {
      throw new AgentcellError(
        'POLICY_INVALID',
        `network.upstream_ca: cannot read "${file}" (${(cause as NodeJS.ErrnoException).code ?? 'error'}); expected a PEM CA certificate file`,
        { cause },
      );
    }
    if (!text.includes('-----BEGIN CERTIFICATE-----'))
      throw new AgentcellError(
        'POLICY_INVALID',
        `network.upstream_ca: "${file}" holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)`,
      );
    pems.push(text);
  }
  return pems;
}

/** What a dry run shows about inspection: patterns, rule count, and secrets by name (never a value). */
export interface InspectionSummary {
  inspect: string[];
  rules: number;
  secrets: { name: string; host: string; header: string }[];
  ca: string;
}

export function inspectionSummary(
  policy: DeepReadonly<Policy>,
  run: DeepReadonly<RunInspection> | undefined,
): InspectionSummary | undefined {
  if (!run) return undefined;
  return {
    inspect: [...policy.network.inspect],
    rules: policy.network.rule.length,
    secrets: run.secrets.map(({ name, host, header }) => ({ name, host, header })),
    ca: run.ca.cert,
  };
}
