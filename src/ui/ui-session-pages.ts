import type { ServerResponse } from 'node:http';
import { AgentcellError } from '../errors.js';
import { listSessions, sessionLogs, type SessionView } from '../index.js';
import { html, seg, type Html } from './html.js';
import { cellShell } from './ui-cell-shell.js';
import { uiCellRef, type UiContext } from './ui-context.js';

/** "stop…" (through its confirmation) for a session still alive, else nothing. */
function stopLink(cell: string, s: SessionView, before = ''): Html {
  if (s.state !== 'running' && s.state !== 'starting') return html``;
  return html`${before}<a class="action" href="/cell/${seg(cell)}/stop-session?id=${seg(s.id)}">stop…</a>`;
}

/** The cell page's sessions: state, started, the transcript, and stop while it lives. */
export async function sessionsSection(ctx: UiContext, cell: string): Promise<Html> {
  const sessions = await listSessions(ctx.paths, cell);
  if (sessions.length === 0)
    return html`<h2>Sessions</h2>
      <p class="muted">none</p>`;
  const rows = [...sessions].reverse().map(
    (s) =>
      html`<tr>
        <td><a href="/cell/${seg(cell)}/session/${seg(s.id)}">${s.id}</a></td>
        <td>${s.state}</td>
        <td><time>${s.startedAt ?? s.createdAt}</time></td>
        <td><code>${s.command.join(' ')}</code></td>
        <td>
          ${s.receipt ? html`<a href="/cell/${seg(cell)}/receipt/${seg(s.receipt)}">receipt</a>` : '–'}
          ${stopLink(cell, s)}
        </td>
      </tr>`,
  );
  return html`<h2>Sessions</h2>
    <table id="sessions">
      <thead>
        <tr>
          <th>session</th>
          <th>state</th>
          <th>started</th>
          <th>command</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        ${rows}
      </tbody>
    </table>`;
}

/** The session of this cell with this id (a session of another cell is not found here). */
export async function cellSession(ctx: UiContext, cell: string, id: string): Promise<SessionView> {
  const found = (await listSessions(ctx.paths, cell)).find((s) => s.id === id);
  if (!found) throw new AgentcellError('SESSION_NOT_FOUND', `no session ${id} in cell ${cell}`);
  return found;
}

/** `/cell/NAME/session/ID`: its transcript as plain text, live while it runs (server-sent events). */
export async function sessionPage(ctx: UiContext, given: string, id: string): Promise<string> {
  const { cell } = uiCellRef(ctx, given);
  const s = await cellSession(ctx, cell, id);
  const body = html`<p>
      ${s.state} · started <time>${s.startedAt ?? s.createdAt}</time> · <code>${s.command.join(' ')}</code>
      ${stopLink(cell, s, ' · ')}
      <span id="live-state" class="muted">connecting…</span>
    </p>
    <pre id="transcript" data-stream="/cell/${seg(cell)}/session/${seg(s.id)}/stream"></pre>`;
  return cellShell(cell, `Session ${s.id}`, body);
}

/**
 * The transcript as server-sent events, each a JSON string of plain text (escapes
 * removed, as `session logs` prints it): what is stored, then the live output until the
 * session ends or the browser goes away. An `end` event says it ended.
 */
export async function streamSession(ctx: UiContext, given: string, id: string, res: ServerResponse): Promise<void> {
  const { cell } = uiCellRef(ctx, given);
  await cellSession(ctx, cell, id);
  const stop = new AbortController();
  res.on('close', () => stop.abort());
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  res.write(': following\n\n');
  await sessionLogs(ctx.paths, id, {
    follow: true,
    signal: stop.signal,
    write: (text) => {
      const chunk = text.toString();
      if (chunk !== '') res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    },
  });
  res.write('event: end\ndata: ""\n\n');
  res.end();
}
