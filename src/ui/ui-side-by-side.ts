import type { ChangePatch } from '../workspace/change-patch.js';
import { html, type Html } from './html.js';

/** One side of a row: a line and its number in that version. */
interface Side {
  no: number;
  text: string;
}

/**
 * A row of the side-by-side view. `pair`: the old line (left) beside the new one (right),
 * either missing where the other version has no line there; a hunk's removed and added
 * lines are paired in order, the rest of the longer run faces blanks.
 */
export type SideBySideRow =
  | { kind: 'hunk'; text: string }
  | { kind: 'note'; text: string }
  | { kind: 'pair'; old: Side | undefined; new: Side | undefined; changed: boolean };

const HUNK = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/;

/** The rows of a unified diff (as `changePatch` makes it), its file header left out. */
export function sideBySideRows(patch: string): SideBySideRow[] {
  const rows: SideBySideRow[] = [];
  let removed: Side[] = [];
  let added: Side[] = [];
  let oldNo = 0;
  let newNo = 0;
  let inHunk = false;
  const flush = (): void => {
    for (let i = 0; i < Math.max(removed.length, added.length); i++)
      rows.push({ kind: 'pair', old: removed[i], new: added[i], changed: true });
    removed = [];
    added = [];
  };
  for (const line of patch.replace(/\n$/, '').split('\n')) {
    const hunk = HUNK.exec(line);
    if (hunk) {
      flush();
      inHunk = true;
      oldNo = Number(hunk[1]);
      newNo = Number(hunk[2]);
      rows.push({ kind: 'hunk', text: line });
    } else if (!inHunk) {
      continue; // the file header: the columns' headings say it
    } else if (line.startsWith('-')) {
      removed.push({ no: oldNo++, text: line.slice(1) });
    } else if (line.startsWith('+')) {
      added.push({ no: newNo++, text: line.slice(1) });
    } else if (line.startsWith('\\')) {
      flush();
      rows.push({ kind: 'note', text: line.slice(2) });
    } else {
      flush();
      rows.push({
        kind: 'pair',
        old: { no: oldNo++, text: line.slice(1) },
        new: { no: newNo++, text: line.slice(1) },
        changed: false,
      });
    }
  }
  flush();
  return rows;
}

/** The mode lines of the patch's header (`new file mode 100755`, `old mode …`), shown above the columns. */
function modeLines(patch: string): string[] {
  const head = patch.split('\n@@')[0] ?? '';
  return head.split('\n').filter((line) => /^(new file|deleted file|old|new) mode /.test(line));
}

function cell(side: Side | undefined, kind: 'del' | 'add', changed: boolean): Html {
  if (!side)
    return html`<td class="no"></td>
      <td class="empty"></td>`;
  return html`<td class="no">${side.no}</td>
    <td class="${changed ? kind : 'ctx'}">${side.text}</td>`;
}

/**
 * One change as two aligned columns: the workspace's version (old) on the left, the
 * cell's (new) on the right, line numbers beside each, removed and added lines marked.
 * A binary file is named, not shown.
 */
export function sideBySide(p: ChangePatch): Html {
  const oldName = p.change === 'added' ? '/dev/null' : `a/${p.path}`;
  const newName = p.change === 'deleted' ? '/dev/null' : `b/${p.path}`;
  const modes = modeLines(p.patch);
  const caption =
    modes.length > 0
      ? html`<caption>
          ${modes.join(' · ')}
        </caption>`
      : '';
  if (p.binary)
    return html`<table class="sbs">
      ${caption}
      <tbody>
        <tr class="binary">
          <td colspan="4">binary file: ${oldName} and ${newName} differ (not shown)</td>
        </tr>
      </tbody>
    </table>`;
  const rows = sideBySideRows(p.patch).map((row) =>
    row.kind === 'pair'
      ? html`<tr class="${row.changed ? 'changed' : 'ctx'}">
          ${cell(row.old, 'del', row.changed)} ${cell(row.new, 'add', row.changed)}
        </tr>`
      : html`<tr class="${row.kind}">
          <td colspan="4">${row.text}</td>
        </tr>`,
  );
  return html`<table class="sbs">
    ${caption}
    <colgroup>
      <col class="no" />
      <col />
      <col class="no" />
      <col />
    </colgroup>
    <thead>
      <tr>
        <th colspan="2" class="path">${oldName} <span class="muted">workspace</span></th>
        <th colspan="2" class="path">${newName} <span class="muted">cell</span></th>
      </tr>
    </thead>
    <tbody>
      ${rows}
    </tbody>
  </table>`;
}
