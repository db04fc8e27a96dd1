import type { Socket } from 'node:net';

/** Read size: what node itself reads per call. */
const READ_SIZE = 64 * 1024;
/** Buffers kept for reuse per relay; more are only made while writes are slow to finish. */
const KEEP = 3;

/**
 * Relays an upstream socket's bytes to the client through a few reused buffers, instead
 * of the fresh 64 KiB buffer node allocates for every read. Those are garbage as soon as
 * they are written, yet V8 frees them only when external memory passes its soft limit
 * (about 64 MiB), so a busy tunnel held tens of MiB of dead buffers; with this the
 * download direction allocates nothing per read. Pass `onread` to `net.connect`, then
 * `attach` the client once the tunnel is spliced. Backpressure: reading stops while the
 * client's write buffer is full and starts again on its `drain`.
 */
export interface PooledRelay {
  /** The `onread` option for `net.connect` (the socket emits no 'data' events then). */
  readonly onread: { buffer: () => Buffer; callback: (bytes: number, buffer: Buffer) => boolean };
  /** Starts writing to `client` what `upstream` reads (and what it read before); ends `client` when `upstream` ends. */
  attach(upstream: Socket, client: Socket): void;
  /** Stops relaying (the tunnel was refused); reads are dropped from now on. */
  detach(): void;
}

export function createPooledRelay(): PooledRelay {
  const spare: Buffer[] = [];
  const early: Buffer[] = [];
  let client: Socket | undefined;
  let upstream: Socket | undefined;
  let detached = false;
  const release = (buffer: Buffer): void => {
    if (spare.length < KEEP) spare.push(buffer);
  };
  const resume = (): void => void upstream?.resume();
  return {
    onread: {
      buffer: () => spare.pop() ?? Buffer.allocUnsafe(READ_SIZE),
      callback: (bytes, buffer) => {
        if (detached) {
          release(buffer);
          return true;
        }
        if (client === undefined) {
          // Before the tunnel is spliced (a server that speaks first): keep a copy, read no more.
          early.push(Buffer.from(buffer.subarray(0, bytes)));
          release(buffer);
          return false;
        }
        // The buffer is reused only once this write has left for the kernel.
        return client.write(buffer.subarray(0, bytes), () => release(buffer));
      },
    },
    attach(source, sink) {
      upstream = source;
      client = sink;
      sink.on('drain', resume);
      source.once('end', () => sink.end());
      for (const chunk of early.splice(0)) sink.write(chunk);
      if (sink.writableNeedDrain) return;
      source.resume();
    },
    detach() {
      detached = true;
      client?.off('drain', resume);
    },
  };
}
