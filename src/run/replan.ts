import type { Backend, CellSpec } from '../backends/backend.js';
import { deepFreeze, type DeepReadonly } from '../_internal/deep-readonly.js';
import type { LayerStack } from '../workspace/overlay/layer-stack.js';
import type { PhaseTimer } from './phase-timer.js';
import type { PreparedRun, RunPlan } from './prepare-run.js';
import { workspaceOverlay } from './run-filesystem.js';
import { replaceCanaryCommand } from '../evidence/canary-script.js';

/** A prepared run made immutable: its data frozen all the way down; the backend and the timer are not data. */
export function sealRun(run: DeepReadonly<RunPlan> & { backend: Backend; timer: PhaseTimer }): PreparedRun {
  const { backend, timer, ...plan } = run;
  return Object.freeze({ ...deepFreeze(plan), backend, timer });
}

/** The same run with another cell spec, planned again by its backend: a new value, the old one unchanged. */
export function replan(prepared: PreparedRun, spec: DeepReadonly<CellSpec>): PreparedRun {
  return sealRun({ ...prepared, spec, plan: prepared.backend.plan(spec) });
}

/** The same run with another command (a login's own, not a coding session's), still behind the canary prelude. */
export function withCommand(prepared: PreparedRun, argv: readonly string[]): PreparedRun {
  return replan(prepared, { ...prepared.spec, argv: replaceCanaryCommand(prepared.spec.argv, argv) });
}

/**
 * The same run over the layer stack found once the cell is locked: another command may
 * have changed the layers since planning. The same value when the mounts stay the same.
 */
export function withLayerStack(prepared: PreparedRun, stack: LayerStack): PreparedRun {
  const overlay = workspaceOverlay(stack, prepared.workspace);
  if (prepared.spec.workspace.overlay?.argvPrefix.join('\0') === overlay.argvPrefix.join('\0')) return prepared;
  return replan(prepared, { ...prepared.spec, workspace: { ...prepared.spec.workspace, overlay } });
}
