import type { Socket } from 'node:net';
import { AgentcellError } from '../errors.js';

/** Read size: what node itself reads per call. */
const READ_SIZE = 64 * 1024;
/** Buffers kept for reuse per socket; more are only made while writes are slow to finish. */
const KEEP = 3;

/** node's `onread` socket option (`net.connect`, `new net.Socket`). */
export interface OnRead {
  buffer: () => Buffer;
  callback: (bytes: number, buffer: Buffer) => boolean;
}

/**
 * A socket's reads into a few reused buffers (node's `onread` option) instead of the
 * fresh 64 KiB buffer node allocates for every read. Those are garbage as soon as they
 * are written, yet V8 frees them only when external memory passes its limits, so a busy
 * tunnel held tens of MiB of dead buffers. Make the socket with `onread`, `bind` it at
 * once, then:
 * - until `relayTo`, each read is copied into the socket's readable side, so it reads
 *   like any socket (proxy handshakes, the first-bytes check, TLS inspection);
 * - after `relayTo(sink)`, each read is written to `sink` straight from its buffer, which
 *   is reused once that write has left for the kernel. Reading stops while `sink`'s write
 *   buffer is full and starts again on its 'drain'; `sink` is ended when the socket ends.
 */
export interface PooledReads {
  readonly onread: OnRead;
  /** The socket made with `onread`. */
  bind(socket: Socket): void;
  /** Relays from now on; what the socket read before (a server that spoke first) goes first. */
  relayTo(sink: Socket): void;
  /** Drops what the socket reads from now on (the tunnel was refused). */
  discard(): void;
}

export function createPooledReads(): PooledReads {
  const spare: Buffer[] = [];
  let source: Socket | undefined;
  let sink: Socket | undefined;
  let discarding = false;
  const release = (buffer: Buffer): void => {
    if (spare.length < KEEP) spare.push(buffer);
  };
  const resume = (): void => void source?.resume();
  return {
    onread: {
      buffer: () => spare.pop() ?? Buffer.allocUnsafe(READ_SIZE),
      callback: (bytes, buffer) => {
        if (discarding || source === undefined) {
          release(buffer);
          return true;
        }
        // The buffer is reused only once this write has left for the kernel.
        if (sink !== undefined) return sink.write(buffer.subarray(0, bytes), () => release(buffer));
        const copy = Buffer.from(buffer.subarray(0, bytes));
        release(buffer);
        return source.push(copy);
      },
    },
    bind(socket) {
      source = socket;
    },
    relayTo(target) {
      if (source === undefined) throw new AgentcellError('INTERNAL', 'pooled reads: relayTo before bind');
      let chunk: unknown;
      while ((chunk = source.read()) !== null) target.write(chunk as Buffer);
      sink = target;
      target.on('drain', resume);
      source.once('end', () => target.end());
      if (!target.writableNeedDrain) source.resume();
    },
    discard() {
      discarding = true;
      sink?.off('drain', resume);
    },
  };
}
