import { spawnSync } from 'node:child_process';
import { appendFileSync, constants, openSync, unlinkSync, writeSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as z from 'zod/mini';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { currentProcess } from '../_internal/process-identity.js';
import { readyAgent } from '../agents/prepare-agent.js';
import { prepareRun } from '../run/prepare-run.js';
import { runPrepared } from '../run/run-cell.js';
import { cellDir } from '../cell/cell-store.js';
import { listJournal, updateRun } from '../receipts/run-journal.js';
import { listenControl } from './control-socket.js';
import { readSession, updateSession } from './session-record.js';
import { ClientMessageSchema, readLines, writeMessage, type ClientMessage } from './session-protocol.js';
import { createTranscriptWriter, type TranscriptSummary } from './session-transcript.js';

/** The run a session starts, handed to its supervisor in its environment (flag values may be secrets). */
export const SESSION_REQUEST_ENV = 'AGENTCELL_SESSION_REQUEST';

export const SessionRequestSchema = z.object({
  options: z.record(z.string(), z.unknown()),
  argv: z.array(z.string()),
  cwd: z.string(),
  rows: z.number(),
  cols: z.number(),
});
export type SessionRequest = z.infer<typeof SessionRequestSchema>;

const FLUSH_MS = 1000;
const REPLAY_BYTES = 64 * 1024;
/** `session send`: the text, then Enter a moment later (a TUI reads one burst as a paste, Enter included). */
const ENTER_DELAY_MS = 150;
/** The terminal's signals reach the supervisor too (it leads the pty's session): it stays. */
const IGNORED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU'];

/**
 * A session's supervisor: started by `startSession` on the slave side of a pty (its
 * stdin, stdout and stderr are the session's terminal), so the run it holds is exactly
 * `agentcell run` in a terminal. Its parent, the pty helper, relays the master to two
 * FIFOs in the session's dir: `out.fifo` (all the terminal printed) is read here into
 * the transcript and to attached clients; `in.fifo` is how they type. The cell dies with
 * the supervisor as with any agentcell: bwrap's --die-with-parent, the OCI watchdog.
 */
export async function superviseSession(dir: string, paths: AgentcellPaths, env: NodeJS.ProcessEnv): Promise<number> {
  const log = (line: string): void =>
    appendFileSync(join(dir, 'supervisor.log'), `${new Date().toISOString()} ${line}\n`);
  for (const signal of IGNORED_SIGNALS) process.on(signal, () => undefined);
  process.umask(0o077);
  const raw = env[SESSION_REQUEST_ENV];
  delete env[SESSION_REQUEST_ENV];
  const request = SessionRequestSchema.parse(JSON.parse(raw ?? 'null'));
  let record = readSession(dir);

  const output = fifo(join(dir, 'out.fifo'), constants.O_RDONLY);
  const input = fifo(join(dir, 'in.fifo'), constants.O_WRONLY);
  input.on('error', () => undefined);
  const transcript = createTranscriptWriter(dir);
  let replay = Buffer.alloc(0);
  let lastOutput = Date.now();
  const attached = new Set<Socket>();
  const followers = new Set<Socket>();
  output.on('data', (chunk: Buffer) => {
    lastOutput = Date.now();
    transcript.write(chunk);
    replay = Buffer.concat([replay, chunk]);
    if (replay.length > REPLAY_BYTES) replay = replay.subarray(replay.length - REPLAY_BYTES);
    const d = chunk.toString('base64');
    for (const client of [...attached, ...followers]) writeMessage(client, { t: 'out', d });
  });

  let runId: string | null = null;
  let journaled = -1;
  let finalizing = false;
  const flush = (): TranscriptSummary => {
    const summary = transcript.flush();
    // The journal carries the hash so far: a run whose supervisor dies is receipted with it.
    if (runId !== null && !finalizing && summary.bytes !== journaled) {
      try {
        updateRun(cellDir(paths, record.cell), runId, { transcript: summary });
        journaled = summary.bytes;
      } catch (error) {
        log(`journal update: ${(error as Error).message}`);
      }
    }
    return summary;
  };
  const flusher = setInterval(flush, FLUSH_MS);

  let size = { rows: request.rows, cols: request.cols };
  const resize = (rows: number, cols: number, redraw = false): void => {
    // A redraw needs a change of size: the kernel signals SIGWINCH only then.
    if (redraw && rows === size.rows && cols === size.cols) setTerminalSize(rows, Math.max(1, cols - 1));
    size = { rows, cols };
    setTerminalSize(rows, cols);
  };
  setTerminalSize(size.rows, size.cols);

  const stop = new AbortController();
  let stopRequested = false;
  const requestStop = (graceMs: number): void => {
    if (stopRequested) return;
    stopRequested = true;
    // Forwarded to the command by the run (as a terminal's `kill` of agentcell would be); then the cell is killed.
    process.kill(process.pid, 'SIGTERM');
    setTimeout(() => stop.abort(), graceMs).unref();
  };
  // The helper gone (killed): no terminal, so the session ends.
  output.on('end', () => requestStop(5000));

  const server = createServer((socket) => {
    readLines(
      socket,
      (value) => {
        const parsed = ClientMessageSchema.safeParse(value);
        if (!parsed.success) {
          writeMessage(socket, { t: 'error', code: 'USAGE', message: 'not a session message' });
          socket.end();
          return;
        }
        handle(socket, parsed.data);
      },
      () => socket.destroy(),
    );
    socket.on('error', () => undefined);
    socket.on('close', () => {
      attached.delete(socket);
      followers.delete(socket);
    });
  });
  const handle = (socket: Socket, message: ClientMessage): void => {
    switch (message.t) {
      case 'attach': {
        attached.add(socket);
        const start = replay.indexOf(0x0a);
        if (replay.length > 0)
          writeMessage(socket, { t: 'out', d: replay.subarray(start >= 0 ? start + 1 : 0).toString('base64') });
        resize(message.rows, message.cols, true);
        return;
      }
      case 'follow':
        followers.add(socket);
        writeMessage(socket, { t: 'mark', bytes: transcript.flush().bytes });
        return;
      case 'in':
        input.write(Buffer.from(message.d, 'base64'));
        return;
      case 'resize':
        resize(message.rows, message.cols);
        return;
      case 'send':
        input.write(message.text);
        setTimeout(() => {
          input.write('\r');
          writeMessage(socket, { t: 'ok' });
        }, ENTER_DELAY_MS);
        return;
      case 'stop':
        requestStop(message.graceMs);
        writeMessage(socket, { t: 'ok' });
        return;
    }
  };
  await listenControl(server, record.socket);
  record = updateSession(dir, { supervisor: currentProcess() });

  let exitCode: number | null = null;
  let receipt: string | null = null;
  try {
    const prepared = await prepareRun({
      ...(request.options as object),
      argv: request.argv,
      tty: true,
      paths,
      cwd: request.cwd,
      hostEnv: env,
    });
    if (prepared.agent) await readyAgent(prepared.agent, (line) => writeSync(2, `${line}\r\n`));
    if (stopRequested) throw new AgentcellError('SESSION_NOT_RUNNING', 'stopped before the cell started');
    const report = await runPrepared(
      prepared,
      paths,
      () => {
        runId = listJournal(cellDir(paths, record.cell)).entries.find((e) => e.owner.pid === process.pid)?.id ?? null;
        record = updateSession(dir, { state: 'running', run: runId, startedAt: new Date().toISOString() });
        // Preparing the run (policy, scan, plan, agent install) left garbage V8 would keep
        // committed while the session idles: one full collection once the cell runs.
        setTimeout(() => (globalThis as { gc?: () => void }).gc?.(), 1000).unref();
      },
      {
        stop: stop.signal,
        beforeReceipt: async () => {
          // The cell is gone; what it printed last is still on its way through the helper.
          const until = Date.now() + 2000;
          while (Date.now() - lastOutput < 150 && Date.now() < until) await sleep(50);
          finalizing = true;
          return { transcript: flush() };
        },
      },
    );
    exitCode = report.outcome.exitCode;
    receipt = report.receipt.id;
    updateSession(dir, {
      state: 'exited',
      exitCode,
      receipt,
      endedAt: new Date().toISOString(),
      transcript: report.receipt.transcript ?? flush(),
    });
  } catch (error) {
    const failure =
      error instanceof AgentcellError ? error : new AgentcellError('INTERNAL', (error as Error).stack ?? String(error));
    log(`failed: ${failure.code}: ${failure.message}`);
    writeSync(2, `agentcell: ${failure.message}\r\n`);
    await sleep(100);
    updateSession(dir, {
      state: record.state === 'running' ? 'exited' : 'failed',
      endedAt: new Date().toISOString(),
      error: { code: failure.code, message: failure.message },
      transcript: flush(),
    });
  } finally {
    clearInterval(flusher);
    for (const client of [...attached, ...followers]) {
      writeMessage(client, { t: 'exit', exitCode, receipt });
      client.end();
    }
    server.close();
    try {
      unlinkSync(record.socket);
    } catch {
      // reached through /proc/self/fd, or gone
    }
    // The FIFOs last: the helper exits when the supervisor does.
    output.destroy();
    input.destroy();
  }
  return exitCode ?? 2;
}

/** A FIFO end as a stream: opened non-blocking (the helper holds the other end), read or written by the event loop. */
function fifo(path: string, mode: number): Socket {
  const fd = openSync(path, mode | constants.O_NONBLOCK);
  return new Socket({ fd, readable: mode === constants.O_RDONLY, writable: mode === constants.O_WRONLY });
}

/** Sets the session's terminal size (stdin is its slave side); its foreground gets SIGWINCH. */
function setTerminalSize(rows: number, cols: number): void {
  spawnSync('stty', ['rows', String(rows), 'cols', String(cols)], { stdio: ['inherit', 'ignore', 'ignore'] });
}
