import type { IncomingMessage } from 'node:http';
import type { CapturedBody } from '../../log/spy-log.js';

/** Request bodies and responses of LLM API calls (for the spy log), kept up to a cap. */
export class BodyCapture {
  static readonly LIMIT = 4 * 1024 * 1024;
  private chunks: Buffer[] = [];
  private size = 0;
  private truncated = false;
  private headers: IncomingMessage['headers'] | undefined;

  add(chunk: Buffer): void {
    if (this.size >= BodyCapture.LIMIT) {
      this.truncated = true;
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  setHeaders(headers: IncomingMessage['headers']): void {
    this.headers = headers;
  }

  result(headers: IncomingMessage['headers'] | undefined): CapturedBody {
    const h = headers ?? this.headers ?? {};
    const encoding = h['content-encoding'];
    return {
      contentType: h['content-type'] ?? '',
      ...(encoding !== undefined ? { contentEncoding: encoding } : {}),
      body: Buffer.concat(this.chunks),
      truncated: this.truncated,
    };
  }
}
