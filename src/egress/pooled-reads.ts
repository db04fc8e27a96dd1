import type { Socket } from 'node:net';
import { AgentcellError } from '../errors.js';

/** Read size: what node itself reads per call. */
const READ_SIZE = 64 * 1024;
/** Buffers kept for reuse per socket; more are only made while writes are slow to finish. */
const KEEP = 3;
/**
 * A socket whose last read filled its buffer reads into a large one next, if one is free:
 * a bulk transfer then takes fewer system calls and callbacks per byte. Large buffers are
 * shared by the whole process and few, so however many tunnels are busy they add at most
 * LARGE_BUFFERS × LARGE_READ_SIZE (1 MiB) to its memory.
 */
const LARGE_READ_SIZE = 256 * 1024;
const LARGE_BUFFERS = 4;
const largeSpare: Buffer[] = [];
let largeMade = 0;

function takeLarge(): Buffer | undefined {
  const buffer = largeSpare.pop();
  if (buffer !== undefined || largeMade === LARGE_BUFFERS) return buffer;
  largeMade++;
  return Buffer.allocUnsafe(LARGE_READ_SIZE);
}

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
  /** The last read filled its buffer: more is probably waiting. */
  let filled = false;
  /** The buffer node will read into next (no write holds it). */
  let next: Buffer | undefined;
  const release = (buffer: Buffer): void => {
    if (buffer.length === LARGE_READ_SIZE) largeSpare.push(buffer);
    else if (spare.length < KEEP) spare.push(buffer);
  };
  const resume = (): void => void source?.resume();
  return {
    onread: {
      buffer: () => {
        next = (filled ? takeLarge() : undefined) ?? spare.pop() ?? Buffer.allocUnsafe(READ_SIZE);
        return next;
      },
      callback: (bytes, buffer) => {
        filled = bytes === buffer.length;
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
      // A large buffer waiting for a read that will never come goes back to the process.
      socket.once('close', () => {
        if (source !== socket) return;
        if (next?.length === LARGE_READ_SIZE) largeSpare.push(next);
        next = undefined;
      });
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
