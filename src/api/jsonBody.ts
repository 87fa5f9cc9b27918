import type { IncomingMessage } from 'node:http';
import type { Context, Middleware, Next } from 'koa';
import { ServiceError } from '../errors.js';

/** `application/json` and `application/<anything>+json`, with or without parameters. */
export const JSON_TYPE = /^application\/([\w.+-]*\+)?json\b/i;

// Only objects and arrays are bodies (koa-body's strict mode); RFC 8259 whitespace may come first.
const STRICT_JSON = /^[\x20\x09\x0a\x0d]*[[{]/;
// Any spelling of a "__proto__" key, escapes included (the test @hapi/bourne makes before a full scan).
const PROTO_KEY = /"(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])"/;

/**
 * The body parser of every route that takes a body: a plain JSON body (no Content-Encoding) is
 * read here, `other` (koa-body) gets the rest (multipart, compressed JSON, forms). koa-body would
 * do the same with the JSON, at several content-type checks and three layers of stream helpers
 * per request; POST /tasks is the route under the most load, and this is most of its bodies.
 * Bodies read here behave as koa-body's: UTF-8 (a BOM is dropped), empty means `{}`, only
 * objects and arrays, `__proto__` keys refused, and the same errors.
 */
export function jsonOrElse(other: Middleware, limitBytes: number): Middleware {
  return async (ctx: Context, next: Next) => {
    const headers = ctx.req.headers;
    const encoding = headers['content-encoding'];
    if (!JSON_TYPE.test(headers['content-type'] ?? '') || (encoding !== undefined && encoding.toLowerCase() !== 'identity')) return other(ctx, next);
    ctx.request.body = parseJson(await readBody(ctx.req, limitBytes)) as Context['request']['body'];
    return next();
  };
}

function parseJson(text: string): unknown {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (!text) return {};
  if (!STRICT_JSON.test(text)) throw notJson();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw notJson();
  }
  if (PROTO_KEY.test(text) && hasProtoKey(value)) throw new ServiceError('VALIDATION_ERROR', 'The body has a "__proto__" key, which is refused');
  return value;
}

function notJson(): ServiceError {
  return new ServiceError('VALIDATION_ERROR', 'The body is not valid JSON');
}

function hasProtoKey(value: unknown): boolean {
  if (!value || typeof value !== 'object') return false;
  if (Object.prototype.hasOwnProperty.call(value, '__proto__')) return true;
  return Object.values(value).some(hasProtoKey);
}

/**
 * The body as UTF-8, its bytes counted against `limitBytes` as they arrive (a Content-Length past
 * the limit is refused before reading), and checked against the Content-Length it announced.
 */
export function readBody(req: IncomingMessage, limitBytes: number): Promise<string> {
  const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  if (declared !== undefined && declared > limitBytes) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => new BodyReader(req, limitBytes, declared, resolve, reject));
}

/** Collects one request body. Bound methods rather than closures: this runs for every request. */
class BodyReader {
  private readonly chunks: Buffer[] = [];
  private received = 0;
  private readonly onData = this.data.bind(this);
  private readonly onEnd = this.end.bind(this);
  private readonly onError = this.failed.bind(this);

  constructor(
    private readonly req: IncomingMessage,
    private readonly limitBytes: number,
    private readonly declared: number | undefined,
    private readonly resolve: (text: string) => void,
    private readonly reject: (err: Error) => void,
  ) {
    req.on('data', this.onData);
    req.on('end', this.onEnd);
    // A client that goes away mid-body ends the request with an 'error' (ECONNRESET, "aborted").
    req.on('error', this.onError);
  }

  private data(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.received > this.limitBytes) this.done(tooLarge());
    else this.chunks.push(chunk);
  }

  private end(): void {
    if (this.declared !== undefined && this.received !== this.declared) return this.done(shortBody());
    const { chunks } = this;
    this.done(null, chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, this.received).toString('utf8'));
  }

  private failed(err: Error & { code?: string }): void {
    this.done(err.code === 'ECONNRESET' ? new ServiceError('VALIDATION_ERROR', 'The request was aborted before its body arrived') : err);
  }

  private done(err: Error | null, text = ''): void {
    const { req } = this;
    req.off('data', this.onData);
    req.off('end', this.onEnd);
    req.off('error', this.onError);
    if (!err) return this.resolve(text);
    // The rest of the body is not wanted; node reads and drops it, keeping the connection usable.
    req.resume();
    this.reject(err);
  }
}

function shortBody(): ServiceError {
  return new ServiceError('VALIDATION_ERROR', 'The body is shorter than its Content-Length');
}

function tooLarge(): ServiceError {
  return new ServiceError('PAYLOAD_TOO_LARGE', 'The request body is larger than this server accepts');
}
