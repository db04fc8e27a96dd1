import { Transform } from 'node:stream';

/** Derived forms shorter than this are not masked: they would star ordinary text. */
const MIN_FORM_LENGTH = 8;

/**
 * Every form in which an upstream commonly reflects a value, so the gateway can mask
 * what it injected however it comes back: raw; hex (lower and upper); base64 and
 * base64url at each of the three alignments a value can have inside a longer base64
 * stream (only the characters that depend on the value alone: the one or two that mix
 * in its neighbours carry a few bits, never the value); percent-encoded (as
 * encodeURIComponent does, and every byte as %XX in either case); JSON-escaped (as
 * JSON.stringify does, with `\/`, and every character as \u00XX). Each form keeps its
 * length when starred, so Content-Length and WebSocket frame lengths stay valid.
 * What is not here (a value the upstream encrypts, double-encodes, splits or compresses
 * inside its body) can't be masked by any gateway: docs/security.md labels it.
 */
export function secretForms(value: string): Buffer[] {
  const raw = Buffer.from(value, 'utf8');
  if (raw.length === 0) return [];
  const forms = new Set<string>([raw.toString('latin1')]);
  const add = (form: string): void => {
    if (form.length >= MIN_FORM_LENGTH) forms.add(form);
  };
  const hex = raw.toString('hex');
  add(hex);
  add(hex.toUpperCase());
  for (const form of base64Forms(raw)) {
    add(form);
    add(form.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  add(encodeURIComponent(value));
  add([...raw].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''));
  add([...raw].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join(''));
  const json = JSON.stringify(value).slice(1, -1);
  add(json);
  add(json.replace(/\//g, '\\/'));
  add(
    Array.from({ length: value.length }, (_, i) => `\\u${value.charCodeAt(i).toString(16).padStart(4, '0')}`).join(''),
  );
  // latin1 keeps one byte per character: the forms are ASCII, the raw value any bytes.
  return [...forms].map((form, i) => (i === 0 ? raw : Buffer.from(form, 'latin1')));
}

/** The base64 characters that depend on `raw` alone, when it starts 0, 1 or 2 bytes into a 3-byte group. */
function base64Forms(raw: Buffer): string[] {
  const forms: string[] = [];
  for (let offset = 0; offset < 3; offset++) {
    const padded = Buffer.concat([Buffer.alloc(offset), raw, Buffer.alloc(2)]);
    const encoded = padded.toString('base64');
    // Character i holds bits [6i, 6i+6); keep those inside the value's bits.
    const first = Math.ceil((8 * offset) / 6);
    const end = Math.floor((8 * (offset + raw.length)) / 6);
    forms.push(encoded.slice(first, end));
  }
  return forms;
}

/** {@link secretForms} of every value, ready for {@link maskValues} and {@link createMaskStream}. */
export function maskedForms(values: readonly string[]): Buffer[] {
  return values.flatMap(secretForms);
}

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

/** {@link maskValues} on a string (a header value), read and written as latin1 like HTTP headers. */
export function maskText(text: string, values: readonly Buffer[]): string {
  return maskValues(Buffer.from(text, 'latin1'), values).toString('latin1');
}

/**
 * A stream that masks secret values on their way back to the cell, so an upstream that
 * reflects a request header (an echo endpoint, an error quoting the key) can't hand the
 * cell what the gateway injected. The byte length never changes (Content-Length holds).
 * Only a tail that could be the start of a value is held back until the next chunk, so
 * streamed responses (SSE) are not delayed. Pass {@link maskedForms} to mask the encoded forms too.
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
export function partialPrefixLength(data: Buffer, values: readonly Buffer[]): number {
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
