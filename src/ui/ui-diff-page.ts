import { cellDiff, cellPatch } from '../cell/cell-decisions.js';
import { html, seg, type Html } from './html.js';
import { cellShell } from './ui-cell-shell.js';
import { uiCellRef, type UiContext } from './ui-context.js';
import { sideBySide } from './ui-side-by-side.js';

/** How the diff page shows each patch: two aligned columns (the default), or as `diff --patch` prints it. */
export type DiffView = 'side-by-side' | 'unified';

const SYMBOL = { added: 'A', modified: 'M', deleted: 'D' } as const;

/** One unified diff, each line a block (layout never depends on whitespace) classed by its first character. */
function patchLines(patch: string): Html {
  const lines = patch.replace(/\n$/, '').split('\n');
  return html`<pre class="patch">
${lines.map((line) => {
      const kind = line.startsWith('@@')
        ? 'hunk'
        : line.startsWith('+++') || line.startsWith('---') || line.startsWith('diff ')
          ? 'head'
          : line.startsWith('+')
            ? 'add'
            : line.startsWith('-')
              ? 'del'
              : 'ctx';
      return html`<span class="${kind}">${line}</span>`;
    })}</pre>`;
}

/**
 * `/cell/NAME/diff`: the pending changes side by side (old | new) or unified (`?view=unified`,
 * as `diff --patch` prints them), each flagged one (control plane, unsafe, conflict, for
 * review) marked with why, and a form choosing what to accept (the choice is confirmed on
 * the next page before anything changes).
 */
export async function diffPage(ctx: UiContext, given: string, view: DiffView = 'side-by-side'): Promise<string> {
  const ref = uiCellRef(ctx, given);
  const changes = await cellDiff(ref);
  const patches = new Map((await cellPatch(ref)).map((p) => [p.path, p]));
  const files = changes.map((c) => {
    const patch = patches.get(c.path);
    return html`<section class="file${c.flagged ? ` flag-${c.flagged.tier}` : ''}" data-path="${c.path}">
      <h3>
        <label
          ><input type="checkbox" name="path" value="${c.path}" />
          <span class="change-${c.change}">${SYMBOL[c.change]}</span>
          <span class="path">${c.path}${c.kind === 'dir' ? '/' : ''}</span></label
        >
        ${c.flagged ? html`<span class="flag">${c.flagged.tier}: ${c.flagged.reason}</span>` : ''}
        ${patch ? html`<span class="muted">+${patch.added} −${patch.removed}</span>` : ''}
      </h3>
      ${patch ? (view === 'unified' ? patchLines(patch.patch) : sideBySide(patch)) : ''}
    </section>`;
  });
  const body =
    changes.length === 0
      ? html`<p>No pending changes.</p>`
      : html`<form method="get" action="/cell/${seg(ref.cell)}/accept" id="accept-form">
          <p>
            ${changes.length} pending change(s). Marked ones are control-plane files (run by tools on the host), unsafe,
            or changed on the host since the run began: read them first.
          </p>
          <p class="buttons">
            <button name="scope" value="selected">accept selected…</button>
            <button name="scope" value="all">accept all…</button>
            <label
              ><input type="checkbox" name="force" value="1" /> force (also control-plane changes and a failed
              run’s)</label
            >
          </p>
          <p id="diff-view">${viewSwitch(ref.cell, view)}</p>
          ${files}
        </form>`;
  return cellShell(ref.cell, `Pending changes in ${ref.cell}`, body);
}

/** Links between the two views: plain links, so the page needs no script. */
function viewSwitch(cell: string, view: DiffView): Html {
  const base = `/cell/${seg(cell)}/diff`;
  return view === 'unified'
    ? html`unified · <a href="${base}">side by side</a>`
    : html`side by side · <a href="${base}?view=unified">unified</a>`;
}
