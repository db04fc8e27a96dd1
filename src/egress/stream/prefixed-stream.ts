import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

/**
 * The client socket as a plain stream that first yields the bytes already read off it
 * (the ClientHello). A TLSSocket over a net.Socket reads its handle directly and would
 * never see bytes put back with unshift().
 */
export function withPrefix(socket: Socket, prefix: Buffer): Duplex {
  const stream = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end();
      callback();
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  if (prefix.length > 0) stream.push(prefix);
  socket.on('data', (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.once('end', () => stream.push(null));
  socket.once('close', () => stream.destroy());
  return stream;
}
