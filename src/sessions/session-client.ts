import type { Socket } from 'node:net';
import { onAbort } from '../_internal/on-abort.js';
import type { ReadStream, WriteStream } from 'node:tty';
import { AgentcellError } from '../errors.js';
import type { AgentcellPaths } from '../paths.js';
import { connectControl } from './control-socket.js';
import { findSession, type SessionRecord } from './session-record.js';
import { settleSession } from './session-status.js';
import { readLines, writeMessage, type ClientMessage, type ServerMessage } from './session-protocol.js';
import { readTranscript } from './session-transcript.js';
import { terminalTextStream } from './terminal-text.js';

/** Ctrl-] then d leaves a session running; Ctrl-] twice types one Ctrl-]. */
export const DETACH_PREFIX = 0x1d;
export const DETACH_KEY = 'd';

async function connectRunning(paths: AgentcellPaths, id: string): Promise<{ record: SessionRecord; socket: Socket }> {
  const found = findSession(paths, id);
  const record = await settleSession(paths, found);
  if (record.state !== 'running' && record.state !== 'starting')
    throw new AgentcellError(
      'SESSION_NOT_RUNNING',
      `session ${record.id} is ${record.state}; agentcell session logs ${record.id} shows what it printed`,
    );
  return { record, socket: await connectControl(record.socket, record.id) };
}

function onMessages(socket: Socket, handle: (message: ServerMessage) => void): void {
  readLines(
    socket,
    (value) => handle(value as ServerMessage),
    () => socket.destroy(),
  );
}

/** One request, answered with `ok`. */
async function request(paths: AgentcellPaths, id: string, message: ClientMessage): Promise<SessionRecord> {
  const { record, socket } = await connectRunning(paths, id);
  await new Promise<void>((resolve, reject) => {
    onMessages(socket, (reply) => {
      if (reply.t === 'ok') resolve();
      if (reply.t === 'error') reject(new AgentcellError('USAGE', reply.message));
    });
    socket.on('close', () => reject(new AgentcellError('SESSION_NOT_RUNNING', `session ${id} ended`)));
    writeMessage(socket, message);
  }).finally(() => socket.end());
  return record;
}

/** Types `text` into the session, then Enter. */
export function sendToSession(paths: AgentcellPaths, id: string, text: string): Promise<SessionRecord> {
  return request(paths, id, { t: 'send', text });
}

/**
 * Stops a session: its command gets SIGTERM, the cell is killed after `graceMs`; resolves
 * when the supervisor has signed the run's receipt.
 */
export async function stopSession(paths: AgentcellPaths, id: string, graceMs: number): Promise<SessionRecord> {
  const { socket } = await connectRunning(paths, id);
  await new Promise<void>((resolve) => {
    onMessages(socket, () => undefined);
    socket.on('close', resolve);
    socket.on('error', resolve);
    writeMessage(socket, { t: 'stop', graceMs });
  });
  const found = findSession(paths, id);
  return settleSession(paths, found);
}

export interface AttachResult {
  how: 'detached' | 'exited';
  exitCode: number | null;
  receipt: string | null;
}

/**
 * Makes this terminal the session's until the detach key (Ctrl-] d) or the session's
 * end: raw input goes to the session, its output comes here, and this window's size is
 * the session terminal's.
 */
export async function attachSession(
  paths: AgentcellPaths,
  id: string,
  terminal: { input: ReadStream | NodeJS.ReadableStream; output: WriteStream | NodeJS.WritableStream },
): Promise<AttachResult> {
  const { socket } = await connectRunning(paths, id);
  const input = terminal.input as ReadStream;
  const output = terminal.output as WriteStream;
  const size = (): { rows: number; cols: number } => ({ rows: output.rows || 24, cols: output.columns || 80 });
  const raw = input.isTTY === true;
  if (raw) input.setRawMode(true);
  let prefixed = false;
  return new Promise<AttachResult>((resolve) => {
    let result: AttachResult = { how: 'exited', exitCode: null, receipt: null };
    const onInput = (chunk: Buffer): void => {
      const bytes: number[] = [];
      for (const byte of chunk) {
        if (prefixed) {
          prefixed = false;
          if (byte === DETACH_KEY.charCodeAt(0)) {
            result = { how: 'detached', exitCode: null, receipt: null };
            socket.end();
            return;
          }
          bytes.push(DETACH_PREFIX);
          if (byte === DETACH_PREFIX) continue;
        } else if (byte === DETACH_PREFIX) {
          prefixed = true;
          continue;
        }
        bytes.push(byte);
      }
      if (bytes.length > 0) writeMessage(socket, { t: 'in', d: Buffer.from(bytes).toString('base64') });
    };
    const onResize = (): void => writeMessage(socket, { t: 'resize', ...size() });
    input.on('data', onInput);
    output.on('resize', onResize);
    input.resume();
    onMessages(socket, (message) => {
      if (message.t === 'out') output.write(Buffer.from(message.d, 'base64'));
      if (message.t === 'exit') result = { how: 'exited', exitCode: message.exitCode, receipt: message.receipt };
    });
    const done = (): void => {
      input.off('data', onInput);
      output.off('resize', onResize);
      if (raw) input.setRawMode(false);
      input.pause();
      resolve(result);
    };
    socket.on('close', done);
    socket.on('error', () => undefined);
    writeMessage(socket, { t: 'attach', ...size() });
  });
}

/**
 * The session's transcript: what is stored, then with `follow` what the live session
 * prints until it ends. Plain text unless `raw`.
 */
export async function sessionLogs(
  paths: AgentcellPaths,
  id: string,
  options: { follow?: boolean; raw?: boolean; write: (text: string | Buffer) => void; signal?: AbortSignal },
): Promise<SessionRecord> {
  const found = findSession(paths, id);
  const record = await settleSession(paths, found);
  const text = terminalTextStream();
  const emit = (chunk: Buffer): void => {
    if (options.raw) options.write(chunk);
    else options.write(text.push(chunk.toString('utf8')));
  };
  const live = options.follow && (record.state === 'running' || record.state === 'starting');
  if (!live) {
    const stored = readTranscript(found.dir);
    if (stored.offset > 0 && !options.raw)
      options.write(`[${stored.offset} earlier bytes dropped by the transcript cap]\n`);
    emit(stored.data);
    if (!options.raw) options.write(text.end());
    return record;
  }
  const socket = await connectControl(record.socket, record.id);
  await new Promise<void>((resolve) => {
    onAbort(options.signal, () => socket.destroy());
    onMessages(socket, (message) => {
      if (message.t === 'mark') {
        // Stored up to the mark; live output comes after it, so nothing twice and nothing lost.
        const stored = readTranscript(found.dir, message.bytes);
        emit(stored.data);
      } else if (message.t === 'out') emit(Buffer.from(message.d, 'base64'));
    });
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
    writeMessage(socket, { t: 'follow' });
  });
  if (!options.raw) options.write(text.end());
  return settleSession(paths, findSession(paths, id));
}
