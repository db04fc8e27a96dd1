import { readdirSync, type Stats } from 'node:fs';
import { onAbort } from '../_internal/on-abort.js';
import { makeDirs } from '../_internal/make-dirs.js';
import type { RunControl, RunOutcome } from '../backends/backend.js';
import { startDiskWatch } from './run-disk-watch.js';
import { AGENTCELL_VERSION } from '../version.js';
import { captureCopy, materializeCopy } from '../workspace/overlay/copy-driver.js';
import { writeJsonCache } from '../_internal/write-json-cache.js';
import { countChanges } from '../workspace/overlay/layer-diff.js';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import type { EgressReload, EgressSummary, Receipt } from '../receipts/receipt.js';
import type { EgressControl, ReloadReport } from '../egress/gateway/egress-control.js';
import type { ReceiptStore } from '../receipts/receipt-store.js';
import { isProcessAlive } from '../_internal/process-identity.js';
import { beginRun, finishRun, listJournal, updateRun, type RunDraft } from '../receipts/run-journal.js';
import { recordBaselines } from '../workspace/accept-baseline.js';
import { countGitChanges, readGitState } from '../workspace/git-state.js';
import { checkpoint, dropUpper, openLayerStack, type LayerStack } from '../workspace/overlay/layer-stack.js';
import { upperChangesNothing } from '../workspace/overlay/idle-upper.js';
import { purgeInBackground } from '../_internal/remove-trees.js';
import { lockCell, openReceipts } from '../cell/cell-transaction.js';
import type { PreparedRun } from './prepare-run.js';
import { withLayerStack } from './replan.js';
import { toolVersion, versionNumber } from '../cell/tool-versions.js';
import { startRunGateway, type RunEgress, type RunningGateway } from '../egress/gateway/run-gateway.js';
import { mutableCopy } from '../_internal/deep-readonly.js';
import { receiptReload, serveEgressReload } from './serve-egress-reload.js';
import { closeInheritedFds } from '../_internal/inherited-fds.js';
import {
  canaryAssuranceReasons,
  canaryStopError,
  discardCanaries,
  readCanaryResults,
  startCanaries,
  type CanaryReport,
} from '../evidence/canaries.js';
import { unwrapCanaryPrelude } from '../evidence/canary-script.js';
import { fingerprintHash, runFingerprint } from '../evidence/fingerprint.js';
import type { TurnRecorder } from '../workspace/overlay/turn-layers.js';
import { receiptTurns, startTurnRecording } from './run-turns.js';
import { sweepNeutralDir } from '../_internal/neutral-dir.js';
import { CANARY_HOST } from '../_internal/vocabulary.js';

export interface RunReport {
  outcome: RunOutcome;
  receipt: Receipt;
}

/** What a caller that holds the run (a session's supervisor) adds to it. */
export interface RunHooks {
  /** Aborting it kills the cell at once (`session stop` after its grace). */
  stop?: AbortSignal;
  /** After the command ended, before the receipt is signed: fields the receipt adds (a session's transcript). */
  beforeReceipt?: () => Promise<Pick<RunDraft, 'transcript'>>;
}

/**
 * Runs a prepared cell as a transaction: lock the cell, receipt any run a killed
 * agentcell left behind, journal this run, run it, freeze what it wrote as a layer
 * (overlay), and sign its receipt into the cell's chain.
 */
export async function runPrepared(
  planned: PreparedRun,
  paths: AgentcellPaths,
  onStart: () => void = () => undefined,
  hooks: RunHooks = {},
): Promise<RunReport> {
  closeInheritedFds(); // for library callers too: only 0–2 may reach the backend (DESIGN.md invariant 10)
  // The workspace's git state, for the receipt. An overlay run leaves the workspace alone, so
  // git reads it from the start, beside the run (at 100,000 files it takes longer than
  // `run -- true`), without listing untracked files, which only a direct run's count of
  // changes needs. Not at a lower priority: a cell keeping every core busy would starve it
  // past its timeout. A direct run changes the workspace: read under the lock, and awaited
  // before the command starts (a readonly run's is not: its command cannot write there).
  const overlayGit =
    planned.spec.workspace.mode === 'overlay' ? readGitState(planned.workspace, { untracked: false }) : undefined;
  const tx = await lockCell(paths, planned.cell, planned.workspace, unwrapCanaryPrelude(planned.spec.argv));
  // What the run drops (turn checkpoints of restored runs, an upper that changed nothing) is
  // deleted by a detached process once the run is over: its fork costs in proportion to this
  // process, and would delay the cell's start or the receipt.
  const purge: string[] = [];
  try {
    // Masked in the cell already: made now so the mask covers what this run puts there (a first run's signing key).
    for (const dir of planned.createOwnDirs ?? []) makeDirs(dir, 0o700);
    const overlay = planned.spec.workspace.mode === 'overlay';
    const stack = overlay
      ? await freezeLeftovers(openLayerStack(tx.dir, planned.overlayDriver), planned.workspace, planned.resolved.hash)
      : undefined;
    // Another command may have changed the layers between planning and locking: the run goes by them.
    const prepared = stack ? withLayerStack(planned, stack) : planned;
    const gitBefore = overlayGit ?? readGitState(prepared.workspace);
    const startedAt = new Date().toISOString();
    const before = stack ? topLayerId(stack) : null;
    const journal = beginRun(tx.dir, runDraft(prepared, paths, before), { startedAt });
    prepared.timer.mark('journal');

    // Before the cell starts: the socket and the trust bundle the cell binds. The rest of the
    // gateway's start (its modules, logs, and the control socket of `agentcell allow`) goes on
    // beside the cell's; the cell's proxy listener is adopted, and so its command started,
    // only once the gateway serves: gateway down = no network.
    const turns = startTurnRecording(prepared, stack, journal.id);
    purge.push(...turns.trashed);
    const gateway = await startGateway(prepared, journal.id, turns.recorder);
    if (gateway) prepared.timer.mark('gateway');
    const stop = new AbortController();
    onAbort(hooks.stop, () => stop.abort());
    const reloads: EgressReload[] = [];
    const onReload = (report: ReloadReport): void => {
      reloads.push(receiptReload(report));
      // Journaled at once, so a run whose agentcell is killed still receipts its reloads.
      updateRun(tx.dir, journal.id, { egress: { ...journal.draft.egress, reloads: [...reloads] } });
    };
    // The gateway's warm-up (the leaf minter, the upstream trust store) waits for the canaries'
    // refused probe where there is one, the cell's last step before its command, so the cell's
    // handoff and probe don't wait behind it: armed before the listener is adopted, so the
    // probe can't come first.
    const probed = gateway !== undefined && prepared.canaries.probesGateway;
    let control: EgressControl | undefined;
    const serving = gateway?.ready.then(async (up) => {
      if (probed) up.warmUp({ afterRefusing: CANARY_HOST });
      control = await serveEgressReload(prepared, journal.id, paths, up, onReload);
      return up;
    });
    serving?.catch(() => stop.abort()); // the cell, refused its listener, ends; the error is thrown below
    let egress: EgressSummary = { allowed: 0, denied: 0 };
    let outcome: RunOutcome;
    let store: ReceiptStore;
    try {
      if (stack?.driver === 'copy') {
        await materializeCopy(stack, prepared.workspace, prepared.spec.masks);
        prepared.timer.mark('copy');
      }
      const { diskBytes } = prepared.spec.limits;
      const diskWatch =
        diskBytes === undefined
          ? undefined
          : await startDiskWatch({
              dir: tx.dir,
              limitBytes: diskBytes,
              ...(stack && stack.driver !== 'copy' ? { confirmDir: stack.upper } : {}),
              onHit: () => stop.abort(),
            });
      if (prepared.spec.workspace.mode === 'direct') await gitBefore; // its "before" must not see the command's writes
      startCanaries(prepared.canaries);
      onStart();
      const running = runBackend(prepared, {
        stop: stop.signal,
        ...(gateway && serving
          ? {
              adoptListener: (listener) =>
                serving.then(
                  () => gateway.adoptListener(listener),
                  () => false,
                ),
            }
          : {}),
      });
      if (prepared.scanCache) writeJsonCache(prepared.scanCache.path, prepared.scanCache.cache);
      if (prepared.digestCache) writeJsonCache(prepared.digestCache.path, prepared.digestCache.cache);
      // While the command runs: load the signing key and receipt any run a killed agentcell left;
      // without a probe, warm the gateway up now; remove what killed runs left on /dev/shm.
      store = await openReceipts(paths, tx);
      if (!probed)
        serving?.then(
          (up) => up.warmUp(),
          () => undefined,
        );
      sweepNeutralDir();
      outcome = await running.finally(() => diskWatch?.stop());
      await serving; // a gateway that did not start fails the run (its cell never ran the command)
      const diskHit = await diskWatch?.stop();
      // 153 = 128 + SIGXFSZ, what a shell reports for a file past its size limit: also when the
      // command finished before the watcher's stop reached it (the writes happened all the same).
      if (diskHit !== undefined) outcome = { ...outcome, exitCode: 153, limitHit: 'disk', limitDetail: diskHit };
      else if (outcome.timedOut)
        outcome = { ...outcome, limitHit: 'timeout', limitDetail: 'the run passed [resources] timeout' };
    } finally {
      await serving?.catch(() => undefined);
      await control?.close();
      if (gateway) egress = await gateway.stop();
      if (reloads.length > 0) egress = { ...egress, reloads };
    }
    if (stack?.driver === 'copy') captureCopy(stack);
    const turnRecords = await turns.recorder?.settle();
    prepared.timer.mark('run');
    // Enforcement canaries: what the prelude found before the command (src/evidence/canaries.ts).
    const canaries = readCanaryResults(prepared.canaries);

    const git = await gitBefore;
    let changes = { added: 0, modified: 0, deleted: 0 };
    let after = before;
    if (stack && readdirSync(stack.upper).length > 0) {
      const { diffLayers } = await import('../workspace/overlay/layer-diff.js');
      const hostStats = new Map<string, Stats | undefined>();
      const runChanges = await diffLayers({ ...stack, layers: [] }, prepared.workspace, { stats: hostStats });
      changes = countChanges(runChanges);
      if (runChanges.length > 0) {
        const frozen = checkpoint(stack, { policyHash: prepared.resolved.hash, changes });
        after = frozen.layer.id;
        recordRunBaselines(frozen, prepared.workspace, startedAt, runChanges, hostStats);
      } else if (await upperChangesNothing(stack, prepared.workspace)) purge.push(dropUpper(stack));
    } else if (!stack) {
      changes = countGitChanges(git, await readGitState(prepared.workspace));
    }
    prepared.timer.mark('finalize');
    const added = await hooks.beforeReceipt?.();
    const receipt = await finishRun(store, journal.id, {
      ...added,
      exitCode: outcome.exitCode,
      changes,
      checkpoint: { before, after },
      ...(turnRecords && turnRecords.length > 0 ? { turns: receiptTurns(turnRecords) } : {}),
      egress,
      workspace: { ...journal.draft.workspace, gitRef: git.gitRef, gitDirty: git.gitDirty },
      timings: { ...prepared.timer.timings },
      ...enforcementFields(prepared, canaries),
      ...(outcome.limitHit
        ? { limit: { hit: outcome.limitHit, detail: outcome.limitDetail ?? outcome.limitHit } }
        : {}),
    });
    if (canaries?.stopped) throw canaryStopError(canaries, receipt.id);
    return { outcome, receipt };
  } finally {
    discardCanaries(planned.canaries); // a run that failed before reading them leaves no canary dir behind
    if (purge.length > 0) purgeInBackground(purge);
    tx.release();
  }
}

/** The receipt fields known before the command starts (git state comes at the end, read meanwhile). */
function runDraft(prepared: PreparedRun, paths: AgentcellPaths, before: string | null): RunDraft {
  const { spec, resolved, assurance, backend } = prepared;
  const backendVersion = toolVersion(paths.state, backend.tool, { parse: versionNumber });
  const draft: RunDraft = {
    command: unwrapCanaryPrelude(spec.argv),
    policy: { hash: resolved.hash, mode: resolved.policy.cell.mode },
    assurance: { ...assurance, reasons: [...assurance.reasons] },
    backend: { name: backend.name, version: backendVersion },
    workspace: { path: prepared.workspace, mode: spec.workspace.mode, gitRef: null, gitDirty: null },
    checkpoint: { before, after: null },
    changes: { added: 0, modified: 0, deleted: 0 },
    egress: { allowed: 0, denied: 0 },
    mounts: [
      {
        source: prepared.workspace,
        target: prepared.workspace,
        mode: spec.workspace.mode === 'readonly' ? 'ro' : 'rw',
      },
      // The receipt says what was mounted where and how; `own` is the backend's business.
      ...spec.mounts.map(({ source, target, mode }) => ({ source, target, mode })),
    ],
    env: Object.keys(spec.env).sort(),
    tools: {
      agentcell: AGENTCELL_VERSION,
      node: process.version,
      [backend.tool]: backendVersion,
      ...(prepared.agent ? { [prepared.agent.name]: prepared.agent.toolchain.version } : {}),
    },
    timings: {},
    fingerprint: fingerprintHash(runFingerprint(prepared, paths.state, process.env)),
  };
  if (spec.image) draft.image = { ...spec.image };
  return draft;
}

/** The receipt's `enforcement`, and the assurance reasons of what got through or could not be told. */
function enforcementFields(prepared: PreparedRun, report: CanaryReport | undefined): Partial<RunDraft> {
  const reasons = canaryAssuranceReasons(report);
  const fields: Partial<RunDraft> = report ? { enforcement: report.probes } : {};
  if (reasons.length > 0) {
    const { assurance } = prepared;
    const level = assurance.level === 'breakglass' ? 'breakglass' : 'reduced';
    fields.assurance = { ...assurance, level, reasons: [...assurance.reasons, ...reasons] };
  }
  return fields;
}

async function startGateway(
  prepared: PreparedRun,
  run: string,
  turns: TurnRecorder | undefined,
): Promise<RunningGateway | undefined> {
  const { egress, spec } = prepared;
  if (!egress || !spec.egress) return undefined;
  // A copy for the gateway, whose types take mutable rules.
  return startRunGateway(
    mutableCopy<RunEgress>(egress),
    spec.egress.socketPath,
    { cell: prepared.cell, run },
    turns ? { onLlmRequest: (start) => turns.take(start) } : {},
  );
}

async function runBackend(prepared: PreparedRun, control: RunControl): Promise<RunOutcome> {
  try {
    return await prepared.backend.run(prepared.spec, prepared.plan, control);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT')
      throw new AgentcellError(
        'BACKEND_UNAVAILABLE',
        `${prepared.backend.tool} is not installed (run agentcell doctor for the fix)`,
        { cause },
      );
    throw cause;
  }
}

/**
 * A run ends by freezing what it wrote, or dropping it when it changes nothing, so a
 * non-empty upper layer at the start is what a killed run left (or a run whose copy-ups
 * the check could not clear): freeze it on its own and credit it to that run's journal
 * entry, so its receipt (written as `interrupted`) counts it and this run's does not.
 */
async function freezeLeftovers(stack: LayerStack, workspace: string, policyHash: string): Promise<LayerStack> {
  if (readdirSync(stack.upper).length === 0) return stack;
  const { diffLayers } = await import('../workspace/overlay/layer-diff.js');
  const hostStats = new Map<string, Stats | undefined>();
  const runChanges = await diffLayers({ ...stack, layers: [] }, workspace, { stats: hostStats });
  if (runChanges.length === 0 && (await upperChangesNothing(stack, workspace))) {
    purgeInBackground([dropUpper(stack)]);
    return stack;
  }
  const changes = countChanges(runChanges);
  const frozen = checkpoint(stack, { policyHash, changes });
  const killed = listJournal(stack.cellDir)
    .entries.filter((e) => !isProcessAlive(e.owner))
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt))
    .at(-1);
  // Without the killed run's start, any host edit since the stack's previous layer counts as during it.
  recordRunBaselines(
    frozen,
    workspace,
    killed?.startedAt ?? stack.layers.at(-1)?.createdAt ?? new Date(0).toISOString(),
    runChanges,
    hostStats,
  );
  if (killed)
    updateRun(stack.cellDir, killed.id, {
      changes,
      checkpoint: { before: killed.draft.checkpoint.before, after: frozen.layer.id },
    });
  return frozen.stack;
}

/** What each changed path looked like on the host, for accept's conflict check (see accept-baseline). */
function recordRunBaselines(
  frozen: { stack: LayerStack; layer: { id: string } },
  workspace: string,
  startedAt: string,
  changes: readonly { path: string }[],
  hostStats: ReadonlyMap<string, Stats | undefined>,
): void {
  recordBaselines(frozen.stack.cellDir, {
    layer: frozen.layer.id,
    liveLayers: frozen.stack.layers.map((l) => l.id),
    runStartedAt: Date.parse(startedAt),
    workspace,
    paths: changes.map((c) => c.path),
    hostStats,
  });
}

function topLayerId(stack: LayerStack): string | null {
  return stack.layers[stack.layers.length - 1]?.id ?? null;
}
