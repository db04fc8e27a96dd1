import { runFingerprint } from '../evidence/fingerprint.js';
import type { Fingerprint } from '../evidence/fingerprint-schema.js';
import type { AgentcellPaths } from '../paths.js';
import { prepareRun } from './prepare-run.js';
import { resolveCellPolicy } from './run-policy.js';

/**
 * What an evidence bundle's `policy.json` and `fingerprint.json` hold: the policy and
 * fingerprint a run in the cell's workspace would get now (a prepared, never started, run).
 * Shared by `evidence export` and the dashboard's export.
 */
export function currentEvidence(
  paths: AgentcellPaths,
): (
  workspace: string,
  cell: string,
) => Promise<{ policy: { hash: string; policy: unknown }; fingerprint: Fingerprint }> {
  return async (workspace, cell) => {
    const options = { workspace, cell };
    const { resolved } = await resolveCellPolicy(options, paths, workspace);
    const prepared = await prepareRun({ ...options, argv: ['true'], tty: false, paths, cwd: workspace });
    return {
      policy: { hash: resolved.hash, policy: resolved.policy },
      fingerprint: runFingerprint(prepared, paths.state, process.env),
    };
  };
}
