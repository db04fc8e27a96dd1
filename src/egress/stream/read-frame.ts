import type { Socket } from 'node:net';

/** A parser's answer: a value and how many bytes it used, `more`, or `invalid`. */
export type FrameParse<T> = { value: T; used: number } | 'more' | 'invalid';

export class FrameError extends Error {
  constructor(readonly why: 'invalid' | 'closed' | 'too-long') {
    super(
      `client ${why === 'closed' ? 'closed the connection' : `sent ${why === 'invalid' ? 'a malformed' : 'an oversized'} message`}`,
    );
    this.name = 'FrameError';
  }
}

/**
 * Reads from `socket` (after `initial`, bytes already taken off it) until `parse`
 * decides. Resolves with the value and the bytes past it, leaving the socket paused
 * with no listener of ours, so the caller can pipe it; rejects with a FrameError when
 * the client sends garbage, too much, or goes away first.
 */
export function readFrame<T>(
  socket: Socket,
  initial: Buffer,
  parse: (data: Buffer) => FrameParse<T>,
  limit = 64 * 1024,
): Promise<{ value: T; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let data = initial;
    const stop = (): void => {
      socket.off('data', onData);
      socket.off('end', onClosed);
      socket.off('close', onClosed);
      socket.pause();
    };
    const attempt = (): boolean => {
      const result = parse(data);
      if (result === 'more' && data.length <= limit) return false;
      stop();
      if (result === 'more') reject(new FrameError('too-long'));
      else if (result === 'invalid') reject(new FrameError('invalid'));
      else resolve({ value: result.value, rest: data.subarray(result.used) });
      return true;
    };
    function onData(chunk: Buffer): void {
      data = data.length === 0 ? chunk : Buffer.concat([data, chunk]);
      attempt();
    }
    function onClosed(): void {
      stop();
      reject(new FrameError('closed'));
    }
    if (attempt()) return;
    if (socket.destroyed || socket.readableEnded) {
      onClosed();
      return;
    }
    socket.on('data', onData);
    socket.once('end', onClosed);
    socket.once('close', onClosed);
    socket.resume();
  });
}
