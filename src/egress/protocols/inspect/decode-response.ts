import type { IncomingHttpHeaders } from 'node:http';
import { pipeline, Transform, type Readable } from 'node:stream';
import { constants, createBrotliDecompress, createGunzip, createInflate, createInflateRaw } from 'node:zlib';

/** A decoded body larger than this is cut off: a small compressed body can't make the gateway inflate gigabytes. */
export const DECODED_BODY_LIMIT = 256 * 1024 * 1024;

/** What the gateway does with a response body before masking secrets in it. */
export type BodyDecoding =
  /** Nothing to undo: mask the bytes as they come. */
  | { kind: 'plain' }
  /** Undo these codings (outermost first); the headers that named them are dropped. */
  | { kind: 'decode'; codings: string[] }
  /** A coding the gateway can't undo, so it can't mask what it hides: the response is refused. */
  | { kind: 'refuse'; coding: string };

const DECODABLE = new Set(['gzip', 'x-gzip', 'deflate', 'br']);

/**
 * How to read a response on which the gateway must mask an injected secret. The request
 * asked for `identity`, but an upstream may compress anyway, in Content-Encoding or in a
 * Transfer-Encoding other than chunked (which node's parser leaves applied to the body,
 * and which the gateway drops as hop-by-hop: the cell would get compressed bytes with no
 * header saying so). Either way the body is decoded here, or refused.
 */
export function bodyDecoding(headers: IncomingHttpHeaders): BodyDecoding {
  const transfer = codings(headers['transfer-encoding']).filter((c) => c !== 'chunked');
  const content = codings(headers['content-encoding']);
  // Applied content first, transfer last: undone in the reverse order.
  const applied = [...content, ...transfer];
  if (applied.length === 0) return { kind: 'plain' };
  const unknown = applied.find((c) => !DECODABLE.has(c));
  if (unknown !== undefined) return { kind: 'refuse', coding: unknown };
  return { kind: 'decode', codings: applied.reverse() };
}

/** The codings named in a header, lower case, without `identity`. */
function codings(header: string | string[] | undefined): string[] {
  const text = Array.isArray(header) ? header.join(',') : (header ?? '');
  return text
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
}

/**
 * `body` with `codings` undone, streaming (tolerant of a body cut short, as a browser
 * is); it fails (and `body` is destroyed) on a corrupt body or once more than `limit`
 * bytes come out.
 */
export function decodeBody(body: Readable, codings: readonly string[], limit = DECODED_BODY_LIMIT): Readable {
  let size = 0;
  const bounded = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > limit) callback(new Error(`decoded body larger than ${limit} bytes`));
      else callback(null, chunk);
    },
  });
  pipeline([body, ...codings.map(decoder), bounded], () => undefined);
  return bounded;
}

function decoder(coding: string): Transform {
  const lenient = { finishFlush: constants.Z_SYNC_FLUSH };
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return createGunzip(lenient);
    case 'br':
      return createBrotliDecompress({ finishFlush: constants.BROTLI_OPERATION_FLUSH });
    default:
      return inflateEither();
  }
}

/**
 * `deflate` is meant to be zlib-wrapped (RFC 9110), but servers send raw deflate too:
 * the first two bytes tell which (a zlib header is a multiple of 31 with method 8).
 */
function inflateEither(): Transform {
  let head = Buffer.alloc(0);
  let inflate: Transform | undefined;
  const chooser = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (inflate) return inflate.write(chunk) ? callback() : inflate.once('drain', () => callback());
      head = Buffer.concat([head, chunk]);
      if (head.length < 2) return callback();
      const zlib = (head[0]! & 0x0f) === 8 && ((head[0]! << 8) | head[1]!) % 31 === 0;
      inflate = zlib
        ? createInflate({ finishFlush: constants.Z_SYNC_FLUSH })
        : createInflateRaw({ finishFlush: constants.Z_SYNC_FLUSH });
      inflate.on('data', (data: Buffer) => chooser.push(data));
      inflate.once('error', (error: Error) => chooser.destroy(error));
      inflate.write(head);
      callback();
    },
    flush(callback) {
      if (!inflate) return callback(head.length > 0 ? new Error('deflate body of one byte') : null);
      inflate.once('end', () => callback());
      inflate.end();
    },
  });
  return chooser;
}
