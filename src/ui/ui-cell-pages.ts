import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cellDiff } from '../cell/cell-decisions.js';
import { cellDir, listCells, readCell } from '../cell/cell-store.js';
import { isProcessAlive } from '../_internal/process-identity.js';
import { anchorPath } from '../receipts/chain-anchor.js';
import { cellLockHolder } from '../receipts/cell-lock.js';
import { decisionFor, type Receipt } from '../receipts/receipt.js';
import { listReceipts, readReceipt, receiptsNewestFirst, verifyCell } from '../receipts/receipt-store.js';
import { renderReceiptMarkdown } from '../receipts/render-receipt.js';
import { unreceiptedRuns } from '../receipts/run-journal.js';
import { loadPublicKeys } from '../receipts/signing-key.js';
import { openLayerStack } from '../workspace/overlay/layer-stack.js';
import { html, page, seg, type Html } from './html.js';
import { cellShell } from './ui-cell-shell.js';
import { uiCellRef, type UiContext } from './ui-context.js';
import { sessionsSection } from './ui-session-pages.js';

function inUse(dir: string): boolean {
  const holder = cellLockHolder(dir);
  return holder !== null && isProcessAlive(holder);
}

function lastRun(dir: string): Receipt | undefined {
  for (const r of receiptsNewestFirst(dir)) if (r.kind === 'run') return r;
  return undefined;
}

/** `/`: every cell with its state, branch, backend, assurance and pending changes. */
export async function cellsPage(ctx: UiContext): Promise<string> {
  const rows: Html[] = [];
  for (const record of listCells(ctx.paths)) {
    const dir = cellDir(ctx.paths, record.name);
    const run = lastRun(dir);
    const pending = (await cellDiff(uiCellRef(ctx, record.name))).length;
    // Branch cells (issue 10) record their branch; older cells have none.
    const branch = (record as { branch?: unknown }).branch;
    rows.push(
      html`<tr>
        <td><a href="/cell/${seg(record.name)}">${record.name}</a></td>
        <td>${inUse(dir) ? 'running' : 'idle'}</td>
        <td>${typeof branch === 'string' ? branch : '–'}</td>
        <td class="path">${record.workspace}</td>
        <td>${run ? `${run.backend.name} ${run.backend.version}` : '–'}</td>
        <td>${run ? html`<span class="assurance-${run.assurance.level}">${run.assurance.level}</span>` : '–'}</td>
        <td>${pending > 0 ? html`<a href="/cell/${seg(record.name)}/diff">${pending} pending</a>` : 'none'}</td>
      </tr>`,
    );
  }
  const body =
    rows.length === 0
      ? html`<p>No cells yet: <code>agentcell run -- …</code> in a workspace makes one.</p>`
      : html`<table id="cells">
          <thead>
            <tr>
              <th>cell</th>
              <th>state</th>
              <th>branch</th>
              <th>workspace</th>
              <th>backend</th>
              <th>assurance</th>
              <th>changes</th>
            </tr>
          </thead>
          <tbody>
            ${rows}
          </tbody>
        </table>`;
  return page('Cells', body);
}

/** `/cell/NAME`: the cell's runs and decisions as a timeline, its checkpoints, and restore and fork. */
export async function cellPage(ctx: UiContext, given: string): Promise<string> {
  const ref = uiCellRef(ctx, given);
  const dir = cellDir(ctx.paths, ref.cell);
  const record = readCell(ctx.paths, ref.cell)!;
  const receipts = listReceipts(dir);
  const pending = (await cellDiff(ref)).length;
  const timeline: Html[] = [];
  for (const run of unreceiptedRuns(dir))
    timeline.push(
      html`<li class="run ${run.state}">
        <time>${run.startedAt}</time> <b>run</b> ${run.state} <code>${run.command.join(' ')}</code>
        <span class="muted">(not receipted yet)</span>
      </li>`,
    );
  for (const r of [...receipts].reverse()) {
    const what =
      r.kind === 'run'
        ? html`<b>run</b> exit ${r.exitCode ?? '–'} · ${decisionFor(receipts, r.id)} · +${r.changes.added}
            ~${r.changes.modified} −${r.changes.deleted}`
        : html`<b>${r.decision}</b>${r.scope ? ` (${r.scope.paths.length} path(s))` : ''}`;
    timeline.push(
      html`<li class="${r.kind}">
        <time>${r.startedAt}</time> <a href="/cell/${seg(ref.cell)}/receipt/${seg(r.id)}">#${r.seq}</a> ${what}
        <code>${r.command.join(' ')}</code>
        ${r.kind === 'run' ? html`<a class="action" href="/cell/${seg(ref.cell)}/evidence?run=${seg(r.id)}">export evidence…</a>` : ''}
      </li>`,
    );
  }
  const sessions = await sessionsSection(ctx, ref.cell);
  const layers = existsSync(join(dir, 'layers.json')) ? openLayerStack(dir).layers : [];
  const checkpoints = layers.map(
    (l) =>
      html`<li>
        #${l.seq} ${l.name ?? l.id} <time>${l.createdAt}</time>
        <a class="action" href="/cell/${seg(ref.cell)}/restore?to=${seg(l.id)}">restore to here…</a>
      </li>`,
  );
  const body = html`<p class="path">
      workspace
      ${record.workspace}${record.forkedFrom ? html` · forked from <a href="/cell/${seg(record.forkedFrom)}">${record.forkedFrom}</a>` : ''}
    </p>
    <p>
      ${pending > 0 ? html`<a href="/cell/${seg(ref.cell)}/diff">${pending} pending change(s)</a>` : 'no pending changes'}
      · <a class="action" href="/cell/${seg(ref.cell)}/restore">restore (drop all changes)…</a>
    </p>
    <form method="get" action="/cell/${seg(ref.cell)}/fork" class="inline">
      <label>fork into <input name="name" required /></label> <button>fork…</button>
    </form>
    <h2>Checkpoints</h2>
    ${
      checkpoints.length > 0
        ? html`<ul id="checkpoints">
            ${checkpoints}
          </ul>`
        : html`<p class="muted">none</p>`
    }
    ${sessions}
    <h2>Timeline</h2>
    ${
      timeline.length > 0
        ? html`<ol id="timeline" class="timeline">
            ${timeline}
          </ol>`
        : html`<p class="muted">no runs yet</p>`
    }`;
  return cellShell(ref.cell, `Cell ${ref.cell}`, body);
}

/** Whatever shape the enforcement canaries take (another branch adds them): a table of objects, or JSON. */
function enforcementSection(value: unknown): Html {
  if (value === undefined) return html``;
  const rows = Array.isArray(value) ? value : value && typeof value === 'object' ? Object.entries(value) : [];
  const cells = rows.map((row: unknown) =>
    Array.isArray(row)
      ? html`<tr>
          <th>${String(row[0])}</th>
          <td><code>${JSON.stringify(row[1])}</code></td>
        </tr>`
      : html`<tr>
          <td colspan="2"><code>${JSON.stringify(row)}</code></td>
        </tr>`,
  );
  return html`<h2>Enforcement canaries</h2>
    <table id="enforcement">
      ${cells}
    </table>`;
}

/** `/cell/NAME/receipt/ID`: one receipt, whether the cell's chain verifies, and its canaries. */
export function receiptPage(ctx: UiContext, given: string, id: string): string {
  const ref = uiCellRef(ctx, given);
  const dir = cellDir(ctx.paths, ref.cell);
  const r = readReceipt(dir, id);
  const all = listReceipts(dir);
  const verified = verifyCell(dir, loadPublicKeys(ctx.paths.config), {
    cell: ref.cell,
    anchor: anchorPath(ctx.paths.config, dir, ref.cell),
  });
  const own = verified.problems.filter((p) => p.id === r.id);
  const verdict = verified.ok
    ? html`<p id="verify" class="ok">
        verified: all ${verified.checked} receipt(s) of cell ${ref.cell} check (signatures, chain, anchor)
      </p>`
    : html`<div id="verify" class="bad">
        <p>verification failed${own.length > 0 ? ' for this receipt' : ' elsewhere in the chain'}:</p>
        <ul>
          ${verified.problems.map((p) => html`<li>#${p.seq} ${p.id}: ${p.problem}</li>`)}
        </ul>
      </div>`;
  const field = (name: string, value: Html | string): Html =>
    html`<tr>
      <th>${name}</th>
      <td>${value}</td>
    </tr>`;
  const body = html`${verdict}
    <table class="fields">
      ${field('kind', r.kind === 'decision' ? html`decision (${r.decision}) of <a href="/cell/${seg(ref.cell)}/receipt/${seg(r.decides ?? '')}">${r.decides ?? '–'}</a>` : 'run')}
      ${field('command', html`<code>${r.command.join(' ')}</code>`)}
      ${field('status', `${r.status}, exit ${r.exitCode ?? '–'}, ${r.durationMs} ms`)}
      ${field('decision', decisionFor(all, r.id))} ${field('started', r.startedAt)}
      ${field('backend', `${r.backend.name} ${r.backend.version}${r.image ? ` · ${r.image.ref} ${r.image.digest}` : ''}`)}
      ${field('assurance', html`<span class="assurance-${r.assurance.level}">${r.assurance.level}</span>`)}
      ${field('policy', `${r.policy.mode} · ${r.policy.hash}`)}
      ${field('changes', `+${r.changes.added} ~${r.changes.modified} −${r.changes.deleted}`)}
      ${r.scope ? field('scope', r.scope.paths.join(', ')) : ''}
      ${field('chain', `#${r.seq}, prev ${r.prev ?? '(first)'}`)} ${field('signature', `${r.signature.keyId}`)}
    </table>
    ${enforcementSection((r as Receipt & { enforcement?: unknown }).enforcement)}
    <details>
      <summary>as <code>receipt show</code> prints it</summary>
      <pre>${renderReceiptMarkdown(r, { decision: decisionFor(all, r.id) })}</pre>
    </details>`;
  return cellShell(ref.cell, `Receipt #${r.seq}`, body);
}
