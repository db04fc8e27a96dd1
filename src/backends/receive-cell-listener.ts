import type { ChildProcess } from 'node:child_process';
import { Server } from 'node:net';

/** The reply the bridge waits for before it exits 0 (src/egress/cell/cell-bridge.ts `handoff`). */
export const LISTENER_ADOPTED = { agentcell: 'listener-adopted' } as const;
/** Any other outcome: the bridge exits 1 at once (node's own `disconnect` event never comes to a sender still waiting for its handle's ACK). */
export const LISTENER_REFUSED = { agentcell: 'listener-refused' } as const;

/** The native IPC pipe under `child.channel`, as node's child_process keeps it. */
interface ChannelHandle {
  onread: (arrayBuffer?: ArrayBuffer) => void;
  readStop(): number;
  pendingHandle?: unknown;
}

/** A handle node accepted from the channel: TCP (the one wanted), a unix socket or UDP (closed). */
interface NativeHandle {
  close(): void;
}

/**
 * Takes the first descriptor the cell sends over the IPC channel of `child` (spawned with an
 * `'ipc'` stdio entry) and gives it, as a listening net.Server, to `adopt`. The channel is
 * the cell's to write (a bridge, a shell and a node of the cell's rootfs hold it until the
 * command starts), so node's own reader never sees it: that reader parses every line as
 * JSON and runs node's handle protocol (NODE_HANDLE, ACK/NACK), and a line of garbage or an
 * unexpected ACK throws in this process and ends it. Instead, before the event loop reads
 * anything, the channel's native `onread` is replaced: the first read is the only one, its
 * bytes are dropped unparsed, reading stops, and only the descriptor that came with it
 * counts, if it is a TCP socket that listens. Whatever else was sent (more descriptors,
 * more bytes) stays in the socket's buffer and is dropped when the channel closes, which is
 * at once. `adopt` decides (the address is the caller's business); only an adopted
 * listener gets the reply the bridge waits for, so a refused one fails the cell closed.
 *
 * The channel handle (`kChannelHandle`), its `onread` and `pendingHandle` are node
 * internals: when this node has none of them, the channel is closed unread, the bridge
 * exits non-zero and the command does not run (test/egress-handoff.test.ts notices).
 */
export function receiveCellListener(
  child: ChildProcess,
  adopt: ((listener: Server) => boolean | Promise<boolean>) | undefined,
): void {
  const channel = channelHandle(child);
  if (!channel) {
    child.disconnect();
    return;
  }
  let settled = false;
  const settle = (handle: unknown): void => {
    if (settled) return;
    settled = true;
    channel.onread = () => undefined;
    channel.readStop();
    if (!isTcpHandle(handle) || !adopt) {
      closeHandle(handle);
      reply(child, false);
      return;
    }
    const listener = new Server();
    listener.once('error', () => {
      listener.close();
      reply(child, false);
    });
    // listen(handle) keeps the descriptor and listens on it again (a no-op for a listening
    // socket; a connected one fails with EINVAL).
    listener.listen(handle, () => {
      // A failing adopter refuses: the command does not run.
      void (async () => adopt(listener))()
        .catch(() => false)
        .then((adopted) => {
          if (!adopted) listener.close();
          reply(child, adopted);
        });
    });
  };
  channel.onread = () => {
    const handle = channel.pendingHandle;
    channel.pendingHandle = undefined;
    settle(handle);
  };
  // Gone before it sent anything (or never started): the channel closes with it.
  child.once('exit', () => settle(undefined));
  child.once('error', () => settle(undefined));
}

function channelHandle(child: ChildProcess): ChannelHandle | undefined {
  const key = Object.getOwnPropertySymbols(child).find((s) => s.description === 'kChannelHandle');
  const candidate: unknown = key === undefined ? undefined : (child as unknown as Record<symbol, unknown>)[key];
  if (typeof candidate !== 'object' || candidate === null) return undefined;
  const handle = candidate as Partial<ChannelHandle>;
  return typeof handle.onread === 'function' && typeof handle.readStop === 'function'
    ? (handle as ChannelHandle)
    : undefined;
}

function isTcpHandle(handle: unknown): handle is NativeHandle {
  return typeof handle === 'object' && handle !== null && handle.constructor.name === 'TCP';
}

function closeHandle(handle: unknown): void {
  if (typeof handle === 'object' && handle !== null && typeof (handle as Partial<NativeHandle>).close === 'function')
    (handle as NativeHandle).close();
}

/** Tells the cell (only agentcell writes this way: nothing the cell parses is trusted here), then closes the channel. */
function reply(child: ChildProcess, adopted: boolean): void {
  if (child.connected) child.send(adopted ? LISTENER_ADOPTED : LISTENER_REFUSED, () => disconnect(child));
}

function disconnect(child: ChildProcess): void {
  if (child.connected) child.disconnect();
}
