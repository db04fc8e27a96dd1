import { Socket, type ConnectOpts, type SocketConstructorOpts } from 'node:net';
import type { PooledReads } from './pooled-reads.js';

/** What node keeps on a socket as `_handle`: the native stream the re-wrap moves over. */
interface StreamHandle {
  readStart(): number;
  readStop(): number;
  useUserBuffer(buffer: Uint8Array): void;
}

interface HandleHolder {
  _handle: unknown;
}

/**
 * A socket accepted by a server made with `pauseOnConnect`, re-wrapped so that it reads
 * into `reads`' buffers (then bound to it). `net.Server` has no `onread` option, so a
 * server socket would get node's fresh 64 KiB buffer per read (the upload direction of
 * every tunnel). The re-wrap uses what node's own accept path uses: the accepted socket's
 * native handle (`_handle`, not yet reading) passed to `new net.Socket({ handle })`,
 * which takes `onread` as for any socket; the old wrapper is destroyed without it, so the
 * connection stays open and the server's connection count drops.
 *
 * Both are undocumented: when a node version no longer fits (no handle, a handle that
 * can't read into user buffers, a `handle` option ignored), this returns undefined and
 * changes nothing, and the caller uses `accepted` with node's buffers, paused.
 * test/egress-relay.test.ts checks that this node takes the pooled path.
 */
export function withPooledReads(accepted: Socket, reads: PooledReads): Socket | undefined {
  const holder = accepted as unknown as HandleHolder;
  const handle = holder._handle;
  if (!isStreamHandle(handle) || accepted.readableFlowing !== false) return undefined;
  // `onread` is a documented constructor option that @types/node lists under ConnectOpts only.
  const options: SocketConstructorOpts & ConnectOpts & { handle: StreamHandle } = {
    handle,
    allowHalfOpen: accepted.allowHalfOpen,
    onread: reads.onread,
  };
  const socket = new Socket(options);
  if ((socket as unknown as HandleHolder)._handle !== handle) {
    socket.destroy();
    return undefined;
  }
  reads.bind(socket);
  holder._handle = null;
  accepted.destroy();
  return socket;
}

function isStreamHandle(value: unknown): value is StreamHandle {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Record<keyof StreamHandle, unknown>>;
  return (
    typeof candidate.readStart === 'function' &&
    typeof candidate.readStop === 'function' &&
    typeof candidate.useUserBuffer === 'function'
  );
}
