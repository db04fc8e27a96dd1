/** The words a policy is made of; no validation code, so the CLI can load them for free. */
export const MODES = ['strict', 'development', 'build', 'breakglass'] as const;
export const BACKENDS = ['bwrap', 'podman', 'docker', 'gvisor'] as const;
export const WORKSPACE_MODES = ['overlay', 'direct', 'readonly'] as const;
export const NETWORK_MODES = ['none', 'allowlist', 'learn', 'open'] as const;

/**
 * The name the enforcement canary asks the gateway for (`.invalid` is reserved, so no policy can
 * allow it): the gateway logs the refusal but doesn't count it among the run's denials.
 */
export const CANARY_HOST = 'agentcell-canary.invalid';

export type Mode = (typeof MODES)[number];
export type BackendName = (typeof BACKENDS)[number];
export type WorkspaceMode = (typeof WORKSPACE_MODES)[number];
export type NetworkMode = (typeof NETWORK_MODES)[number];

/** The network modes whose traffic leaves through the egress gateway (learn: allowlist's gateway, logging instead of refusing). */
export function usesGateway(mode: unknown): boolean {
  return mode === 'allowlist' || mode === 'learn';
}
