import { Transform } from 'node:stream';

/** Masks every occurrence of `values` in `data` with `*` of the same length (in place; lengths stay valid). */
export function maskValues(data: Buffer, values: readonly Buffer[]): Buffer {
  for (const value of values) {
    if (value.length === 0) continue;
    let at = data.indexOf(value);
    while (at !== -1) {
      data.fill(0x2a, at, at + value.length);
      at = data.indexOf(value, at + value.length);
    }
  }
  return data;
}

/**
 * A stream that masks secret values on their way back to the cell, so an upstream that
 * reflects a request header (an echo endpoint, an error quoting the key) can't hand the
 * cell what the gateway injected. The byte length never changes (Content-Length holds).
 * Only a tail that could be the start of a value is held back until the next chunk, so
 * streamed responses (SSE) are not delayed.
 */
export function createMaskStream(values: readonly Buffer[]): Transform {
  const secrets = values.filter((v) => v.length > 0);
  let tail = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const data = maskValues(tail.length > 0 ? Buffer.concat([tail, chunk]) : Buffer.from(chunk), secrets);
      const keep = partialPrefixLength(data, secrets);
      tail = Buffer.from(data.subarray(data.length - keep));
      callback(null, data.subarray(0, data.length - keep));
    },
    flush(callback) {
      callback(null, tail);
    },
  });
}

/** The longest suffix of `data` that is a proper prefix of one of `values`. */
function partialPrefixLength(data: Buffer, values: readonly Buffer[]): number {
  let longest = 0;
  for (const value of values) {
    const max = Math.min(value.length - 1, data.length);
    for (let n = max; n > longest; n--) {
      if (data.subarray(data.length - n).equals(value.subarray(0, n))) {
        longest = n;
        break;
      }
    }
  }
  return longest;
}
