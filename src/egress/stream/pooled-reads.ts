import type { Socket } from 'node:net';
import { AgentcellError } from '../../errors.js';
import { socketFlushed } from './socket-flushed.js';

/** Read size: what node itself reads per call. */
const READ_SIZE = 64 * 1024;
/**
 * A socket whose last read filled its buffer reads into a large one next, if one is free:
 * a bulk transfer then takes fewer system calls and callbacks per byte. There are few, so
 * however many tunnels are busy they add at most LARGE_BUFFERS × LARGE_READ_SIZE (1 MiB).
 */
const LARGE_READ_SIZE = 256 * 1024;
const LARGE_BUFFERS = 4;
/** Free READ_SIZE buffers kept: enough for new connections to take one instead of allocating. */
const SMALL_KEPT = 32;

// Buffers no socket holds, shared by every socket (and gateway) in the process. Each buffer
// is in exactly one place: free here, a socket's next read, or a write not yet finished.
const freeSmall: Buffer[] = [];
const freeLarge: Buffer[] = [];
let largeMade = 0;

function take(large: boolean): Buffer {
  if (large && freeLarge.length === 0 && largeMade < LARGE_BUFFERS) {
    largeMade++;
    return Buffer.allocUnsafe(LARGE_READ_SIZE);
  }
  return (large ? freeLarge.pop() : undefined) ?? freeSmall.pop() ?? Buffer.allocUnsafe(READ_SIZE);
}

function giveBack(buffer: Buffer): void {
  if (buffer.length === LARGE_READ_SIZE) freeLarge.push(buffer);
  else if (freeSmall.length < SMALL_KEPT) freeSmall.push(buffer);
}

/** node's `onread` socket option (`net.connect`, `new net.Socket`). */
export interface OnRead {
  buffer: () => Buffer;
  callback: (bytes: number, buffer: Buffer) => boolean;
}

/**
 * A socket's reads into reused buffers (node's `onread` option) instead of the fresh
 * 64 KiB buffer node allocates for every read. Those are garbage as soon as they
 * are written, yet V8 frees them only when external memory passes its limits, so a busy
 * tunnel held tens of MiB of dead buffers. Make the socket with `onread`, `bind` it at
 * once, then:
 * - until `relayTo`, each read is copied into the socket's readable side, so it reads
 *   like any socket (proxy handshakes, the first-bytes check, TLS inspection);
 * - after `relayTo(sink)`, each read is written to `sink` straight from its buffer, which
 *   is reused once that write has left for the kernel. Reading stops while `sink`'s write
 *   buffer is full and starts again on its 'drain'; `sink` is ended when the socket ends;
 * - after `consume(consumer)`, each read is handed to `consumer` as a view of its buffer,
 *   which is reused once the consumer calls `release` (a forward proxy's response body).
 */
export interface PooledReads {
  readonly onread: OnRead;
  /** The socket made with `onread`. */
  bind(socket: Socket): void;
  /** Relays from now on; what the socket read before (a server that spoke first) goes first. */
  relayTo(sink: Socket): void;
  /** Tells `relayed` after each read is written on (undefined: no one). */
  observe(relayed: (() => void) | undefined): void;
  /**
   * Stops relaying (the socket no longer reads) and settles once every write to the sink has
   * left for the kernel, so another relay can take both sockets over; `release` starts again.
   */
  hold(): Promise<void>;
  release(): void;
  /**
   * Hands each read from now on to `consumer`, after what the socket read before. It
   * returns false to stop reading until the socket's `resume()`.
   */
  consume(consumer: (data: Buffer, release: () => void) => boolean): void;
  /** Drops what the socket reads from now on (the tunnel was refused). */
  discard(): void;
}

export function createPooledReads(): PooledReads {
  let source: Socket | undefined;
  let sink: Socket | undefined;
  let consumer: ((data: Buffer, release: () => void) => boolean) | undefined;
  let discarding = false;
  let holding = false;
  let onRelayed: (() => void) | undefined;
  /** The last read filled its buffer: more is probably waiting. */
  let filled = false;
  /** The buffer node will read into next (no write holds it). */
  let next: Buffer | undefined;
  const resume = (): void => {
    if (!holding) source?.resume();
  };
  return {
    onread: {
      buffer: () => {
        next = take(filled);
        return next;
      },
      callback: (bytes, buffer) => {
        filled = bytes === buffer.length;
        if (discarding || source === undefined) {
          giveBack(buffer);
          return true;
        }
        // The buffer is reused only once this write has left for the kernel.
        if (sink !== undefined) {
          const more = sink.write(buffer.subarray(0, bytes), () => giveBack(buffer));
          onRelayed?.();
          return more && !holding;
        }
        if (consumer !== undefined) {
          // Once only: a buffer given back twice would be two sockets' next read.
          let held = true;
          return consumer(buffer.subarray(0, bytes), () => {
            if (held) giveBack(buffer);
            held = false;
          });
        }
        const copy = Buffer.from(buffer.subarray(0, bytes));
        giveBack(buffer);
        return source.push(copy);
      },
    },
    bind(socket) {
      source = socket;
      // The buffer waiting for a read that will never come goes to the next connection.
      socket.once('close', () => {
        if (source !== socket || next === undefined) return;
        giveBack(next);
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
    consume(handler) {
      if (source === undefined) throw new AgentcellError('INTERNAL', 'pooled reads: consume before bind');
      let chunk: unknown;
      while ((chunk = source.read()) !== null) handler(chunk as Buffer, () => undefined);
      consumer = handler;
    },
    observe(relayed) {
      onRelayed = relayed;
    },
    hold() {
      holding = true;
      source?.pause();
      return sink === undefined ? Promise.resolve() : socketFlushed(sink);
    },
    release() {
      holding = false;
      if (sink !== undefined && !sink.writableNeedDrain) source?.resume();
    },
    discard() {
      discarding = true;
      sink?.off('drain', resume);
    },
  };
}
