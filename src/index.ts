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
export { prepareRun, type CellOptions, type PreparedRun, type RunPlan, type RunRequest } from './run/prepare-run.js';
export { resolveCellPolicy } from './run/run-policy.js';
export { replan, withCommand, withLayerStack } from './run/replan.js';
export { PhaseTimer, type Timings } from './run/phase-timer.js';
export { decideAfterRun, type AfterRun, type AfterRunOptions } from './run/decide-after-run.js';
export { scanSecrets, BUILT_IN_HIDE } from './workspace/secret-scan.js';
export { runPrepared, type RunReport } from './run/run-cell.js';
export type { DeepReadonly } from './_internal/deep-readonly.js';
export {
  acceptCell,
  cellDiff,
  checkpointCell,
  forkCell,
  forkCells,
  forkNames,
  restoreCell,
  type CellRef,
  type FlaggedChange,
  type ForkReport,
} from './cell/cell-decisions.js';
export { landCell, type LandCellReport, type LandOptions } from './cell/land-cell.js';
export { compareCells, type CellComparison, type CheckResult, type CompareOptions } from './run/compare-cells.js';
export { listCells, locateCell, readCell, siblingCells, type CellRecord } from './cell/cell-store.js';
export {
  landBranch,
  openBranchCell,
  readBranchRecord,
  type BranchCell,
  type BranchRecord,
  type LandReport,
} from './cell/branch-cell.js';
export { publishBranch, type PublishReport } from './cell/publish.js';
export type { EgressReload, Receipt } from './receipts/receipt.js';
export { listReceipts, readReceipt, verifyCell } from './receipts/receipt-store.js';
export { loadPublicKeys } from './receipts/signing-key.js';
export { renderReceiptMarkdown } from './receipts/render-receipt.js';
export { runDoctor, type DoctorReport } from './evidence/doctor.js';
export { createEgressGateway, type EgressGateway } from './egress/gateway/egress-gateway.js';
export { createLeafMinter, loadOrCreateCellCa, type CellCa } from './egress/cell/cell-ca.js';
export { cellCaFiles, trustEnvironment } from './egress/cell/cell-trust.js';
export { compileInspectRules, type ProxySecret, type RequestRule } from './egress/rules/inspect-rules.js';
export { llmProvider, type SpyRecord } from './egress/log/spy-log.js';
export { findSpyLog, followSpyLog } from './egress/log/spy-files.js';
export { parseSpyRecord, readSpyLog, renderSpyRecord, type LlmCall } from './egress/log/spy-render.js';
export { readCellEgress, followCellEgress, type EgressLogChoice } from './cell/cell-egress-log.js';
export { reloadCellEgress } from './cell/egress-reload.js';
export type { ReloadReport } from './egress/gateway/egress-control.js';
export type { EgressEvent } from './egress/log/egress-log.js';
export { ensureCellSshKey, type CellSshKey } from './cell/cell-ssh-key.js';
export { AGENTCELL_VERSION } from './version.js';
export { AGENT_NAMES } from './agents/agent-adapter.js';
export type { AgentAdapter, AgentCredential, AgentName, SeedFile } from './agents/agent-adapter.js';
export { agentAdapter, allAgentAdapters } from './agents/agent-registry.js';
export { agentPolicyLayer } from './agents/agent-policy-layer.js';
export { installToolchain, npmToolchain, toolchainsRoot, type AgentToolchain } from './agents/agent-toolchain.js';
export { prepareAgent, readyAgent, settleAgentLogins, type PreparedAgent } from './agents/prepare-agent.js';
export { prepareLogin, runLogin, type PreparedLogin } from './run/agent-login.js';
export { loginStore } from './agents/login-store.js';
export { startSession, type SessionStartRequest } from './sessions/session-start.js';
export { superviseSession } from './sessions/session-supervisor.js';
export {
  attachSession,
  sendToSession,
  sessionLogs,
  stopSession,
  type AttachResult,
} from './sessions/session-client.js';
export { listSessions, settleSession, type SessionView } from './sessions/session-status.js';
export { findSession, allSessions, type SessionRecord, type SessionState } from './sessions/session-record.js';
export { sessionTimeline, type TimelineEvent } from './sessions/session-timeline.js';
