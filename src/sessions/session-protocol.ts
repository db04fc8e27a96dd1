import type { Socket } from 'node:net';
import * as z from 'zod/mini';

/**
 * What a session's control socket carries: one JSON object per line each way. Terminal
 * bytes travel base64 in `d`. A client says what it wants first (`attach`, `follow`,
 * `send`, `stop`); the supervisor answers and, for attach and follow, streams
 * `out` until the session ends with `exit`.
 */
const size = {
  rows: z.number().check(z.int(), z.gte(1), z.lte(1000)),
  cols: z.number().check(z.int(), z.gte(1), z.lte(1000)),
};

export const ClientMessageSchema = z.discriminatedUnion('t', [
  z.object({ t: z.literal('attach'), ...size }),
  z.object({ t: z.literal('follow') }),
  z.object({ t: z.literal('in'), d: z.string() }),
  z.object({ t: z.literal('resize'), ...size }),
  z.object({ t: z.literal('send'), text: z.string() }),
  z.object({ t: z.literal('stop'), graceMs: z.number().check(z.gte(0)) }),
]);
export type ClientMessage = z.infer<typeof ClientMessageSchema>;

export type ServerMessage =
  | { t: 'out'; d: string }
  /** follow: the stored transcript holds the stream up to `bytes`; `out` carries what comes after. */
  | { t: 'mark'; bytes: number }
  | { t: 'ok' }
  | { t: 'error'; code: string; message: string }
  | { t: 'exit'; exitCode: number | null; receipt: string | null };

/** A line longer than this is no message of ours: the connection is closed. */
const MAX_LINE = 4 * 1024 * 1024;

/** Calls `onMessage` for each JSON line read from `socket`; `onBad` for a line that isn't one. */
export function readLines(socket: Socket, onLine: (value: unknown) => void, onBad: () => void): void {
  let buffer = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    if (buffer.length > MAX_LINE) return onBad();
    let end: number;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 1);
      if (line.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return onBad();
      }
      onLine(value);
    }
  });
}

export function writeMessage(socket: Socket, message: ClientMessage | ServerMessage): void {
  if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
}
