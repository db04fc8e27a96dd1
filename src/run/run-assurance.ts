import type { BackendPlan, CellSpec } from '../backends/backend.js';
import { assess, trackedSecretReasons, type Assurance } from '../policy/assurance.js';
import type { Policy } from '../policy/schema.js';
import type { LayerStack } from '../workspace/overlay/layer-stack.js';
import { agentAssuranceReasons, type PreparedAgent } from '../agents/prepare-agent.js';
import type { HiddenPaths } from './run-filesystem.js';

/** The run's assurance: the policy's mode, lowered by each thing the plan cannot hold on this host, one reason each. */
export function runAssurance(parts: {
  policy: Policy;
  plan: BackendPlan;
  spec: CellSpec;
  stack: LayerStack | undefined;
  passEnv: readonly string[];
  agent: PreparedAgent | undefined;
  hidden: HiddenPaths;
}): Assurance {
  const { stack, agent, hidden } = parts;
  return assess(parts.policy, [
    ...parts.plan.gaps,
    ...(stack?.driver === 'fuse-overlayfs' ? ['workspace overlay through fuse-overlayfs, not the kernel'] : []),
    ...(stack?.driver === 'copy'
      ? ['workspace overlay by the copy driver: no overlay mount here, a copy per run']
      : []),
    ...parts.passEnv.map((name) => `host variable ${name} passed in`),
    ...(parts.spec.seccomp ? [] : ['seccomp filter off']),
    ...(agent ? agentAssuranceReasons(agent) : []),
    ...trackedSecretReasons(hidden.tracked, hidden.unchecked),
  ]);
}
