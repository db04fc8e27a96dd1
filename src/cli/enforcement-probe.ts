import { prepareRun } from '../run/prepare-run.js';
import { runPrepared } from '../run/run-cell.js';
import { AgentcellError } from '../errors.js';
import type { EnforcementProbe } from '../evidence/canaries.js';
import type { AgentcellPaths } from '../paths.js';
import { latestReceipt } from '../receipts/receipt-store.js';
import { cellDir } from '../cell/cell-store.js';

export interface EnforcementReport {
  /** The receipt of the probe run (`true` in the workspace's cell): it is a run like any other. */
  receipt: string | null;
  cell: string;
  backend: string;
  held: boolean;
  probes: EnforcementProbe[];
}

/** `doctor --probe`: the enforcement canaries of a real run of `true` in this workspace's cell, on demand. */
export async function probeEnforcement(paths: AgentcellPaths): Promise<EnforcementReport> {
  const prepared = await prepareRun({ argv: ['true'], tty: false, paths });
  let receiptId: string | null = null;
  try {
    receiptId = (await runPrepared(prepared, paths)).receipt.id;
  } catch (error) {
    if (!(error instanceof AgentcellError && error.code === 'ENFORCEMENT_FAILED')) throw error;
  }
  const receipt = latestReceipt(cellDir(paths, prepared.cell));
  const probes = receipt?.enforcement ?? [];
  return {
    receipt: receipt?.id ?? receiptId,
    cell: prepared.cell,
    backend: prepared.backend.name,
    held: probes.length > 0 && probes.every((p) => p.result === 'blocked' || p.result === 'skipped'),
    probes: probes.map((p) => ({ ...p })),
  };
}
