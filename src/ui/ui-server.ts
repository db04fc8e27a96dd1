import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { html, page } from './html.js';
import { confirmPage, doAction, exportDownload, hasCsrfToken, isActionName } from './ui-actions.js';
import { UI_CSS, UI_JS } from './ui-assets.js';
import { cellPage, cellsPage, receiptPage } from './ui-cell-pages.js';
import type { UiContext } from './ui-context.js';
import { diffPage } from './ui-diff-page.js';
import { egressPage, streamEgress } from './ui-egress-page.js';
import { guardRequest, newUiSecrets, SECURITY_HEADERS } from './ui-guard.js';
import { sessionPage, streamSession } from './ui-session-pages.js';

/** The only address the dashboard listens on: loopback, never a LAN or wildcard address. */
export const UI_BIND = '127.0.0.1';

export interface RunningUi {
  server: Server;
  port: number;
  /** The URL to open: it carries the token (the first load trades it for a cookie). */
  url: string;
  close(): Promise<void>;
}

const MAX_FORM_BYTES = 256 * 1024;

function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        reject(new AgentcellError('USAGE', 'form too large'));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type });
  res.end(body);
}

const HTML = 'text/html; charset=utf-8';

function errorPage(res: ServerResponse, status: number, message: string): void {
  send(
    res,
    status,
    HTML,
    page(status === 403 || status === 401 ? 'Refused' : 'Error', html`<p class="bad" id="error">${message}</p>`),
  );
}

/** Routes a request that passed the guard. Path segments are decoded; names are checked where used. */
async function route(ctx: UiContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const get = req.method === 'GET' || req.method === 'HEAD';
  if (get && parts.length === 0) return send(res, 200, HTML, await cellsPage(ctx));
  if (get && parts[0] === 'assets' && parts.length === 2) {
    if (parts[1] === 'ui.css') return send(res, 200, 'text/css; charset=utf-8', UI_CSS);
    if (parts[1] === 'ui.js') return send(res, 200, 'text/javascript; charset=utf-8', UI_JS);
  }
  if (parts[0] === 'cell' && parts[1] !== undefined) {
    const [, cell, what, id] = parts;
    if (get && what === undefined) return send(res, 200, HTML, await cellPage(ctx, cell));
    if (get && what === 'receipt' && id !== undefined && parts.length === 4)
      return send(res, 200, HTML, receiptPage(ctx, cell, id));
    if (get && what === 'diff' && parts.length === 3) {
      const view = url.searchParams.get('view') === 'unified' ? 'unified' : 'side-by-side';
      return send(res, 200, HTML, await diffPage(ctx, cell, view));
    }
    if (get && what === 'egress' && parts.length === 3) return send(res, 200, HTML, egressPage(ctx, cell));
    if (get && what === 'egress' && id === 'stream' && parts.length === 4) return streamEgress(ctx, cell, res);
    if (get && what === 'session' && id !== undefined && parts.length === 4)
      return send(res, 200, HTML, await sessionPage(ctx, cell, id));
    if (get && what === 'session' && id !== undefined && parts[4] === 'stream' && parts.length === 5)
      return streamSession(ctx, cell, id, res);
    if (what !== undefined && isActionName(what) && parts.length === 3) {
      if (get) return send(res, 200, HTML, await confirmPage(ctx, what, cell, url.searchParams));
      if (req.method === 'POST') {
        const form = await readForm(req);
        if (!hasCsrfToken(ctx, form))
          return errorPage(
            res,
            403,
            'this form is not from this dashboard (CSRF token missing or wrong): reload the page',
          );
        if (what === 'evidence') {
          form.delete('csrf');
          const bundle = await exportDownload(ctx, cell, form);
          res.writeHead(200, {
            'content-type': 'application/x-tar',
            'content-disposition': `attachment; filename="${bundle.name}"`,
          });
          return void res.end(bundle.data);
        }
        return send(res, 200, HTML, await doAction(ctx, what, cell, form));
      }
    }
  }
  errorPage(res, 404, `no page ${url.pathname}`);
}

async function handle(ctx: UiContext, port: number, req: IncomingMessage, res: ServerResponse): Promise<void> {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
  const url = new URL(req.url ?? '/', `http://${UI_BIND}:${port}`);
  const verdict = guardRequest(req, url, port, ctx.secrets);
  if (!verdict.ok) return errorPage(res, verdict.status, verdict.why);
  if ('setCookie' in verdict) {
    res.writeHead(303, { 'set-cookie': verdict.setCookie, location: verdict.location });
    return void res.end();
  }
  try {
    await route(ctx, req, res, url);
  } catch (error) {
    if (res.headersSent) return void res.destroy();
    if (error instanceof AgentcellError) errorPage(res, error.exitCode === 2 ? 400 : 409, error.message);
    else errorPage(res, 500, `unexpected failure: ${(error as Error).message}`);
  }
}

/**
 * Starts the dashboard on 127.0.0.1 (`port` 0: a free one). Any other bind address is
 * refused: the token guards the dashboard from other local users and pages, not from a
 * network, and nothing here is meant to be reachable from one.
 */
export async function startUi(options: { paths: AgentcellPaths; port: number; bind?: string }): Promise<RunningUi> {
  const bind = options.bind ?? UI_BIND;
  if (bind !== UI_BIND)
    throw new AgentcellError(
      'USAGE',
      `the dashboard listens on ${UI_BIND} only, not ${bind}: to reach it from elsewhere, forward the port (ssh -L ${options.port || 8080}:${UI_BIND}:PORT)`,
    );
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)
    throw new AgentcellError(
      'USAGE',
      `--port ${options.port}: expected a port number (0 to 65535; 0 picks a free one)`,
    );
  const ctx: UiContext = { paths: options.paths, secrets: newUiSecrets() };
  let port = 0;
  const server = createServer((req, res) => void handle(ctx, port, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new AgentcellError('USAGE', `port ${options.port} is in use: choose another with --port, or leave it out`)
          : error,
      ),
    );
    server.listen(options.port, UI_BIND, resolve);
  });
  const address = server.address() as AddressInfo;
  if (address.address !== UI_BIND) {
    server.close();
    throw new AgentcellError('INTERNAL', `the dashboard ended up on ${address.address}, not ${UI_BIND}`);
  }
  port = address.port;
  return {
    server,
    port,
    url: `http://${UI_BIND}:${port}/?token=${ctx.secrets.token}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
