import { html, page, seg, type Html } from './html.js';

/** The links every page about one cell carries. */
export const cellNav = (cell: string): Html =>
  html` · <a href="/cell/${seg(cell)}">${cell}</a> · <a href="/cell/${seg(cell)}/diff">diff</a> ·
    <a href="/cell/${seg(cell)}/egress">egress</a>`;

/** A whole page about one cell: the shared shell (html.ts `page`) with the cell's links. */
export function cellShell(cell: string, title: string, body: Html): string {
  return page(title, body, cellNav(cell));
}
