import type { ServerResponse } from 'node:http';
import { cellDir } from '../cell/cell-store.js';
import { followCellEgress, liveRuns, readCellEgress } from '../cell/cell-egress-log.js';
import { AgentcellError } from '../errors.js';
import type { EgressEvent } from '../egress/log/egress-log.js';
import { findSpyLog } from '../egress/log/spy-files.js';
import { readSpyLog, renderSpyRecord } from '../egress/log/spy-render.js';
import { html, seg, type Html } from './html.js';
import { cellShell } from './ui-cell-shell.js';
import { uiCellRef, type UiContext } from './ui-context.js';

/** The columns an egress event shows in; the script builds live rows from the same list. */
function eventRow(e: EgressEvent): Html {
  return html`<tr class="${e.decision}">
    <td>${e.time}</td>
    <td>${e.decision}</td>
    <td>${e.kind}</td>
    <td>${e.host}:${e.port}</td>
    <td>${e.rule ?? ''}</td>
    <td>${e.reason}</td>
    <td>${e.bytesUp}/${e.bytesDown}</td>
  </tr>`;
}

function spySection(ctx: UiContext, cell: string): Html {
  try {
    const { run, path } = findSpyLog(cellDir(ctx.paths, cell), cell);
    const calls = readSpyLog(path).map((r) => html`<pre class="spy">${renderSpyRecord(r)}</pre>`);
    return html`<h2>LLM calls (spy), run ${run}</h2>
      ${calls.length > 0 ? calls : html`<p class="muted">none</p>`}`;
  } catch (error) {
    if (error instanceof AgentcellError && error.code === 'SPY_LOG_NOT_FOUND')
      return html`<h2>LLM calls (spy)</h2>
        <p class="muted">${error.message}</p>`;
    throw error;
  }
}

/**
 * `/cell/NAME/egress`: every finished run's egress decisions, then the live run's as they
 * happen (server-sent events from `/cell/NAME/egress/stream`), filtered by the script,
 * and the LLM calls `agentcell spy` shows.
 */
export function egressPage(ctx: UiContext, given: string): string {
  const { cell } = uiCellRef(ctx, given);
  const live = new Set(liveRuns(ctx.paths, cell));
  // The live run's events come through the stream (from its start), not twice.
  const events = readCellEgress(ctx.paths, cell, { all: true }).events.filter((e) => !live.has(e.run));
  const body = html`<p class="filters">
      <label><input type="checkbox" id="show-allow" checked /> allowed</label>
      <label><input type="checkbox" id="show-deny" checked /> denied</label>
      <span id="live-state" class="muted">connecting to the live log…</span>
    </p>
    <table id="egress" data-stream="/cell/${seg(cell)}/egress/stream">
      <thead>
        <tr>
          <th>time</th>
          <th>decision</th>
          <th>kind</th>
          <th>destination</th>
          <th>rule</th>
          <th>reason</th>
          <th>bytes up/down</th>
        </tr>
      </thead>
      <tbody>
        ${events.map(eventRow)}
      </tbody>
    </table>
    ${spySection(ctx, cell)}`;
  return cellShell(cell, `Egress of ${cell}`, body);
}

/**
 * The live egress log as server-sent events: the cell's live run followed to its end,
 * then the next one, until the browser goes away. Events are JSON; the script renders
 * them as text, never markup.
 */
export async function streamEgress(ctx: UiContext, given: string, res: ServerResponse): Promise<void> {
  const { cell } = uiCellRef(ctx, given);
  const stop = new AbortController();
  res.on('close', () => stop.abort());
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  res.write(': following\n\n');
  while (!stop.signal.aborted) {
    await followCellEgress(ctx.paths, cell, {
      signal: stop.signal,
      onChunk: (chunk) => {
        for (const event of chunk.events) res.write(`data: ${JSON.stringify(event)}\n\n`);
      },
    });
  }
  res.end();
}
