/**
 * The bridge that runs INSIDE the cell. The cell has loopback only; the gateway's unix
 * socket is mounted into it. The bridge listens on 127.0.0.1:PORT (what HTTP_PROXY,
 * HTTPS_PROXY and ALL_PROXY name) and splices every connection to that socket, byte
 * for byte: all policy lives in the gateway, so the bridge has nothing to get wrong.
 * If the gateway is gone, every connection is closed at once (fail closed).
 *
 * Self-contained (node builtins only) so it can be bound into the cell on its own, bundled
 * with its entry (cell-bridge-main.ts) as one CommonJS file (`npm run build`: CommonJS starts
 * faster than an ES module, and the handoff is on every gateway run's critical path):
 *
 *   node agentcell-bridge.cjs listen SOCKET [PORT] [HOST]
 *     Prints `ready PORT` on stdout once listening (PORT 0 picks a free port).
 *   node agentcell-bridge.cjs handoff PORT [HOST]
 *     Where the backend passes descriptors (bwrap): no relay. Listens on HOST:PORT, sends the
 *     listener to agentcell over node's IPC channel (NODE_CHANNEL_FD, set by agentcell's
 *     spawn), waits for agentcell's reply that it adopted it, then exits 0: the gateway
 *     accepts the cell's connections itself. Exits 1 (the prelude then 125) otherwise.
 *   node agentcell-bridge.cjs connect SOCKET HOST PORT
 *     An ssh ProxyCommand (`ProxyCommand node …/agentcell-bridge.cjs connect SOCKET %h %p`):
 *     CONNECTs through the gateway with the token from AGENTCELL_PROXY_TOKEN and joins
 *     the tunnel to stdin/stdout. Exits 1 with the gateway's reason when refused.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export interface CellBridge {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Starts the bridge; resolves once it listens. */
export function startCellBridge(options: { socketPath: string; port?: number; host?: string }): Promise<CellBridge> {
  const host = options.host ?? '127.0.0.1';
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ path: options.socketPath, allowHalfOpen: true });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    }
    client.setNoDelay(true);
    const destroyBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', destroyBoth);
    upstream.on('error', destroyBoth);
    client.once('close', (hadError) => hadError && upstream.destroy());
    upstream.once('close', (hadError) => hadError && client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      resolve({
        host,
        port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const socket of sockets) socket.destroy();
          }),
      });
    });
  });
}

/**
 * Opens a CONNECT tunnel to HOST:PORT through the gateway socket; resolves with the
 * socket once the gateway said 200 (any bytes it already sent after the reply are
 * pushed back), rejects with the gateway's status line and reason otherwise.
 */
export function connectThroughGateway(options: {
  socketPath: string;
  token: string;
  host: string;
  port: number;
}): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path: options.socketPath, allowHalfOpen: true });
    const authority = options.host.includes(':')
      ? `[${options.host}]:${options.port}`
      : `${options.host}:${options.port}`;
    const credentials = Buffer.from(`agentcell:${options.token}`).toString('base64');
    let head = Buffer.alloc(0);
    const fail = (error: Error): void => {
      socket.destroy();
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > 16384) fail(new Error('gateway reply too long'));
        return;
      }
      socket.off('data', onData);
      socket.off('error', fail);
      socket.off('end', onEnd);
      socket.pause();
      const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      if (!/^HTTP\/1\.[01] 200 /.test(status)) {
        const body = head
          .subarray(end + 4)
          .toString('utf8')
          .trim();
        fail(new Error(body || status));
        return;
      }
      const rest = head.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    const onEnd = (): void => fail(new Error('the gateway closed the connection'));
    socket.on('data', onData);
    socket.once('error', fail);
    socket.once('end', onEnd);
    socket.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${credentials}\r\n\r\n`,
    );
  });
}

/** The reply agentcell sends once it holds the listener (backends/receive-cell-listener.ts; this file imports nothing of agentcell's). */
const ADOPTED = 'listener-adopted';
const REFUSED = 'listener-refused';
/** How long the host has to take the listener; it answers in a moment unless it is gone. */
const HANDOFF_TIMEOUT_MS = 10_000;

/**
 * Makes the listener and hands it to the process at the other end of the IPC channel;
 * resolves once that process said it adopted it, rejects otherwise. This process's own copy
 * of the descriptor closes when it exits: from then on only agentcell holds it, so the
 * listener is gone (connections refused) when agentcell is.
 */
export async function handOffListener(port: number, host: string): Promise<void> {
  const send = process.send?.bind(process);
  if (!send) throw new Error('no IPC channel to agentcell (NODE_CHANNEL_FD)');
  const server = createServer({ pauseOnConnect: true });
  server.listen(port, host);
  await once(server, 'listening');
  const adopted = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('agentcell did not take the listener')), HANDOFF_TIMEOUT_MS);
    process.on('message', (message: unknown) => {
      const reply =
        typeof message === 'object' && message !== null ? (message as { agentcell?: unknown }).agentcell : '';
      if (reply !== ADOPTED && reply !== REFUSED) return;
      clearTimeout(timer);
      if (reply === ADOPTED) resolve();
      else reject(new Error('agentcell refused the listener'));
    });
  });
  await new Promise<void>((resolve, reject) =>
    send({ agentcell: 'listener' }, server, (error: Error | null) => (error ? reject(error) : resolve())),
  );
  await adopted;
}

/** The bridge's command line (see the top of this file); cell-bridge-main.ts runs it. */
export async function runBridgeCommand(argv: string[]): Promise<void> {
  const [command, socketPath, ...rest] = argv;
  if (command === 'handoff' && socketPath) {
    // Here the second word is the port: the socket is not used (the ssh ProxyCommand still is).
    await handOffListener(Number(socketPath), rest[0] ?? '127.0.0.1');
    process.exit(0);
  }
  if (command === 'listen' && socketPath) {
    const bridge = await startCellBridge({ socketPath, port: Number(rest[0] ?? 0), host: rest[1] ?? '127.0.0.1' });
    process.stdout.write(`ready ${bridge.port}\n`);
    return;
  }
  if (command === 'connect' && socketPath && rest[0] && rest[1]) {
    const token = process.env['AGENTCELL_PROXY_TOKEN'] ?? '';
    const socket = await connectThroughGateway({ socketPath, token, host: rest[0], port: Number(rest[1]) });
    socket.on('error', () => process.exit(1));
    socket.once('close', () => process.exit(0));
    process.stdin.pipe(socket);
    socket.pipe(process.stdout);
    return;
  }
  process.stderr.write(
    'usage: agentcell-bridge listen SOCKET [PORT] [HOST] | handoff PORT [HOST] | connect SOCKET HOST PORT\n',
  );
  process.exitCode = 2;
}
