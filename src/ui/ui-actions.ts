import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acceptCell, forkCell, restoreCell } from '../cell/cell-decisions.js';
import { checkCellName } from '../cell/cell-name.js';
import { cellDir } from '../cell/cell-store.js';
import { AgentcellError } from '../errors.js';
import { stopSession } from '../index.js';
import { listReceipts } from '../receipts/receipt-store.js';
import { currentEvidence } from '../run/evidence-current.js';
import { sessionExport } from '../sessions/session-evidence.js';
import { removeTrees } from '../_internal/remove-trees.js';
import type { Receipt } from '../receipts/receipt.js';
import { html, seg, type Html } from './html.js';
import { cellShell } from './ui-cell-shell.js';
import { uiCellRef, type UiContext } from './ui-context.js';
import { sameSecret } from './ui-guard.js';
import { cellSession } from './ui-session-pages.js';

/**
 * The dashboard's decisions: each is asked for with a GET that only dry-runs it and shows
 * what it would do (the confirmation), and done by the POST that page's form sends with
 * the CSRF token. Each calls the library function its CLI twin calls, so it takes the
 * same lock and leaves the same receipt, its `command` saying it came from the ui.
 * `evidence`'s POST is a download (`exportDownload`), not a page.
 */
export type ActionName = 'accept' | 'restore' | 'fork' | 'stop-session' | 'evidence';

/** How long a session stopped from the dashboard gets to exit (`session stop`'s default). */
const STOP_GRACE_MS = 10_000;

interface Action {
  /** The choice from the query (GET) or form (POST), and agentcell's argv for it (after `agentcell ui`). */
  parse(params: URLSearchParams): { argv: string[]; describe: Html };
  run(ctx: UiContext, cell: string, params: URLSearchParams, dryRun: boolean): Promise<Outcome>;
}

interface Outcome {
  summary: Html;
  receipt?: Receipt | undefined;
}

const list = (items: readonly string[]): Html =>
  items.length > 0
    ? html`<ul class="paths">
        ${items.map((p) => html`<li class="path">${p}</li>`)}
      </ul>`
    : html``;

function sessionId(params: URLSearchParams): string {
  const id = params.get('id') ?? params.get('session') ?? '';
  if (!/^s-[0-9a-z]{17}$/.test(id)) throw new AgentcellError('USAGE', `${JSON.stringify(id)} is not a session id`);
  return id;
}

/** What `evidence` exports: a run, or a session (its run and transcript). */
function evidenceChoice(params: URLSearchParams): { run: string } | { session: string } {
  if (params.has('session')) return { session: sessionId(params) };
  const run = params.get('run') ?? '';
  if (!/^r-[0-9a-z]+$/.test(run)) throw new AgentcellError('USAGE', `${JSON.stringify(run)} is not a run id`);
  return { run };
}

async function evidenceSubject(ctx: UiContext, cell: string, params: URLSearchParams): Promise<string> {
  const choice = evidenceChoice(params);
  const run = 'run' in choice ? choice.run : (await cellSession(ctx, cell, choice.session)).run;
  if (run === null || !listReceipts(cellDir(ctx.paths, cell)).some((r) => r.id === run))
    throw new AgentcellError('RECEIPT_NOT_FOUND', `no receipted run ${run ?? '(not started)'} in cell ${cell}`);
  return run;
}

/**
 * The `evidence` POST: the bundle `evidence export` writes, read back for the browser
 * to download (written to a private temp dir, removed after).
 */
export async function exportDownload(
  ctx: UiContext,
  cell: string,
  form: URLSearchParams,
): Promise<{ name: string; data: Buffer }> {
  uiCellRef(ctx, cell);
  const run = await evidenceSubject(ctx, cell, form);
  const choice = evidenceChoice(form);
  const { exportEvidence } = await import('../evidence/evidence-bundle.js');
  const dir = mkdtempSync(join(tmpdir(), 'agentcell-ui-evidence-'));
  try {
    const out = join(dir, 'bundle.tar');
    await exportEvidence({
      paths: ctx.paths,
      ...('session' in choice ? { session: sessionExport(ctx.paths, choice.session) } : { run }),
      out,
      current: currentEvidence(ctx.paths),
    });
    return { name: `evidence-${'session' in choice ? choice.session : run}.tar`, data: readFileSync(out) };
  } finally {
    removeTrees([dir]);
  }
}

function acceptChoice(params: URLSearchParams): { paths: string[]; force: boolean } {
  const paths = params.getAll('path');
  if (params.get('scope') !== 'all' && paths.length === 0)
    throw new AgentcellError('USAGE', 'choose at least one file to accept, or accept all');
  return { paths: params.get('scope') === 'all' ? [] : paths, force: params.get('force') === '1' };
}

const ACTIONS: Record<ActionName, Action> = {
  accept: {
    parse(params) {
      const { paths, force } = acceptChoice(params);
      return {
        argv: ['accept', ...paths, ...(force ? ['--force'] : [])],
        describe: html`accept
        ${paths.length === 0 ? 'all pending changes' : `${paths.length} chosen path(s)`}${force ? ' (force)' : ''}`,
      };
    },
    async run(ctx, cell, params, dryRun) {
      const { paths, force } = acceptChoice(params);
      const argv = ACTIONS.accept.parse(params).argv;
      const report = await acceptCell(uiCellRef(ctx, cell, argv), { paths, force, dryRun });
      return {
        summary: html`<p>
            ${dryRun ? 'would apply' : 'applied'} ${report.applied.length}
            change(s)${report.pending !== undefined ? `, ${report.pending} left pending in the cell` : ''}:
          </p>
          ${list(report.applied.map((c) => `${c.change} ${c.path}`))}
          ${
            report.refused.length > 0
              ? html`<p class="bad">skipped:</p>
                  ${list(report.refused.map((r) => `${r.path}: ${r.reason}`))}`
              : ''
          }
          ${
            report.flagged.length > 0
              ? html`<p class="warn">for review before the host runs them:</p>
                  ${list(report.flagged.map((f) => `${f.path}: ${f.reason}`))}`
              : ''
          }`,
        receipt: report.receipt,
      };
    },
  },
  restore: {
    parse(params) {
      const to = params.get('to');
      return {
        argv: ['restore', ...(to ? ['--to', to] : [])],
        describe: html`restore
        ${to ? html`to checkpoint <code>${to}</code>` : 'the workspace’s state (drop every change)'}`,
      };
    },
    async run(ctx, cell, params, dryRun) {
      const to = params.get('to');
      const report = await restoreCell(uiCellRef(ctx, cell, ACTIONS.restore.parse(params).argv), {
        dryRun,
        ...(to ? { to } : {}),
      });
      const { added, modified, deleted } = report.changes;
      return {
        summary: html`<p>
            ${dryRun ? 'would drop' : 'dropped'} ${added + modified + deleted} change(s) in ${report.dropped.length}
            layer(s)${report.paths ? ':' : ` (${added} added, ${modified} modified, ${deleted} deleted)`}
          </p>
          ${list((report.paths ?? []).map((c) => `${c.change} ${c.path}`))}`,
        receipt: report.receipt,
      };
    },
  },
  fork: {
    parse(params) {
      const name = checkCellName(params.get('name') ?? '');
      return { argv: ['fork', name], describe: html`fork into a new cell <code>${name}</code>` };
    },
    async run(ctx, cell, params, dryRun) {
      const { argv } = ACTIONS.fork.parse(params);
      const report = await forkCell(uiCellRef(ctx, cell, argv), argv[1]!, { dryRun });
      return {
        summary: html`<p>
          ${dryRun ? 'would fork' : 'forked'} into
          <a href="/cell/${seg(report.cell)}">${report.cell}</a> (${report.layers} layer(s))
        </p>`,
        receipt: report.receipt,
      };
    },
  },
  'stop-session': {
    parse(params) {
      const id = sessionId(params);
      return { argv: ['session', 'stop', id], describe: html`stop session <code>${id}</code>` };
    },
    async run(ctx, cell, params, dryRun) {
      const id = sessionId(params);
      const session = await cellSession(ctx, cell, id);
      if (dryRun)
        return {
          summary: html`<p>
            would stop session ${id} (${session.state}): SIGTERM to its command, its cell killed after
            ${STOP_GRACE_MS / 1000} s
          </p>`,
        };
      const record = await stopSession(ctx.paths, id, STOP_GRACE_MS);
      return {
        summary: html`<p>
          stopped session <a href="/cell/${seg(cell)}/session/${seg(id)}">${id}</a>: ${record.state}, exit
          ${record.exitCode ?? 'none'}${record.receipt ? html`, receipt <a href="/cell/${seg(cell)}/receipt/${seg(record.receipt)}">${record.receipt}</a>` : ''}
        </p>`,
      };
    },
  },

  evidence: {
    parse(params) {
      const choice = evidenceChoice(params);
      const argv =
        'run' in choice
          ? ['evidence', 'export', '--run', choice.run]
          : ['evidence', 'export', '--session', choice.session];
      return {
        argv,
        describe: html`export the evidence bundle of ${'run' in choice ? 'run' : 'session'}
          <code>${argv[3] ?? ''}</code>`,
      };
    },
    async run(ctx, cell, params) {
      const run = await evidenceSubject(ctx, cell, params);
      return {
        summary: html`<p>
          would write one signed tar of run ${run} (the cell's receipt chain, key, anchor, egress and spy logs, patch,
          policy, fingerprint${params.has('session') ? ', the session transcript' : ''}) for you to download
        </p>`,
      };
    },
  },
};

export const isActionName = (name: string): name is ActionName => Object.hasOwn(ACTIONS, name);

/** The confirmation: what the action would do (a dry run), and the form that does it. */
export async function confirmPage(
  ctx: UiContext,
  name: ActionName,
  cell: string,
  params: URLSearchParams,
): Promise<string> {
  const action = ACTIONS[name];
  const { argv, describe } = action.parse(params);
  const outcome = await action.run(ctx, cell, params, true);
  const hidden = [...params].map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}" />`);
  const body = html`<p>
      Confirm: ${describe} in cell <b>${cell}</b>. Its receipt records <code>agentcell ui ${argv.join(' ')}</code>.
    </p>
    ${outcome.summary}
    <form method="post" action="/cell/${seg(cell)}/${name}" id="confirm">
      <input type="hidden" name="csrf" value="${ctx.secrets.csrf}" />${hidden} <button class="danger">${name}</button>
      <a href="/cell/${seg(cell)}">cancel</a>
    </form>`;
  return cellShell(cell, `Confirm ${name}`, body);
}

/** Whether a POSTed form carries this launch's CSRF token (the server answers 403 when not). */
export const hasCsrfToken = (ctx: UiContext, form: URLSearchParams): boolean =>
  sameSecret(form.get('csrf') ?? undefined, ctx.secrets.csrf);

/** The POST (its CSRF token already checked): the action done. */
export async function doAction(ctx: UiContext, name: ActionName, cell: string, form: URLSearchParams): Promise<string> {
  form.delete('csrf');
  const outcome = await ACTIONS[name].run(ctx, cell, form, false);
  const receipt = outcome.receipt;
  const body = html`<div id="done">${outcome.summary}</div>
    ${receipt ? html`<p>receipt <a href="/cell/${seg(cell)}/receipt/${seg(receipt.id)}">#${receipt.seq} ${receipt.id}</a></p>` : ''}
    <p><a href="/cell/${seg(cell)}">back to the cell</a></p>`;
  return cellShell(cell, `Done: ${name}`, body);
}
