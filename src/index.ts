export { AgentcellError, type ErrorCode } from './errors.js';
export { agentcellPaths, type AgentcellPaths } from './paths.js';
export type { Backend, BackendPlan, CellSpec, RunOutcome } from './backends/backend.js';
export { createBwrapBackend, planBwrap, probeBwrap } from './backends/bwrap-backend.js';
export { createOciBackend, planOci, type OciBackendName, type OciBackendOptions } from './backends/oci-backend.js';
export { probeEngine, probeRunscRuntime, type OciEngine } from './backends/oci-engine.js';
export { createBackend, resolveCellImage, DEFAULT_CELL_IMAGE } from './backends/select-backend.js';
export { buildImage, buildRootfs, listImages, removeImage, type CellImageRecord } from './images/cell-image.js';
export { buildSeccompFilter } from './backends/seccomp-filter.js';
export { PolicySchema, type Policy, type Mode } from './policy/schema.js';
export { resolvePolicy, sourceOf, type ResolvedPolicy } from './policy/resolve-policy.js';
export { explainPolicy, type ExplainedValue } from './policy/explain-policy.js';
export { readPolicyFile } from './policy/policy-layer.js';
export { assess, type Assurance } from './policy/assurance.js';
export { prepareRun, type CellOptions, type PreparedRun, type RunRequest } from './cell/prepare-run.js';
export { scanSecrets, BUILT_IN_HIDE } from './workspace/secret-scan.js';
export { runPrepared, type RunReport } from './cell/run-cell.js';
export {
  acceptCell,
  cellDiff,
  checkpointCell,
  forkCell,
  restoreCell,
  type CellRef,
  type FlaggedChange,
} from './cell/cell-decisions.js';
export { listCells, locateCell, readCell, type CellRecord } from './cell/cell-store.js';
export type { Receipt } from './receipts/receipt.js';
export { listReceipts, readReceipt, verifyCell } from './receipts/receipt-store.js';
export { loadPublicKeys } from './receipts/signing-key.js';
export { renderReceiptMarkdown } from './receipts/render-receipt.js';
export { runDoctor, type DoctorReport } from './evidence/doctor.js';
export { createEgressGateway, type EgressGateway } from './egress/egress-gateway.js';
export { AGENTCELL_VERSION } from './version.js';
