import type { IncomingMessage } from 'node:http';
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createUnzip } from 'node:zlib';
import type { Context, Middleware, Next } from 'koa';
import { ServiceError } from '../errors.js';

/** `application/json` and `application/<anything>+json`, with or without parameters. */
export const JSON_TYPE = /^application\/([\w.+-]*\+)?json\b/i;

/**
 * How deep objects and arrays may nest in a JSON body, the body itself counting as 1. Deeper
 * bodies are refused before anything walks them: the checks and canonical forms after the parser
 * recurse, and 10,000 levels overflowed their stack (issue 13).
 */
export const MAX_JSON_DEPTH = 128;

// Only objects and arrays are bodies (koa-body's strict mode); RFC 8259 whitespace may come first.
const STRICT_JSON = /^[\x20\x09\x0a\x0d]*[[{]/;
// Any spelling of a "__proto__" key, escapes included (the test @hapi/bourne makes before a full scan).
const PROTO_KEY = /"(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])"/;

// The Content-Encodings a JSON body may have (as koa-body took them: zlib's unzip reads gzip and
// zlib-wrapped deflate alike).
const DECODERS: Record<string, () => Transform> = {
  gzip: createUnzip,
  'x-gzip': createUnzip,
  deflate: createUnzip,
  br: createBrotliDecompress,
};

/** A body's Content-Encoding and the stream that undoes it. */
interface Decoding {
  name: string;
  decoder: Transform;
}

/**
 * The body parser of every route that takes a body: JSON bodies, plain or compressed (gzip,
 * deflate, br), are read here; `other` (koa-body) gets the rest (multipart). Bodies read here are
 * UTF-8 (a BOM is dropped), empty means `{}`, only objects and arrays, nested at most
 * MAX_JSON_DEPTH deep, `__proto__` keys refused. A body that does not decompress is a
 * VALIDATION_ERROR, and the limit counts the bytes sent and the bytes they decompress to.
 */
export function jsonOrElse(other: Middleware, limitBytes: number): Middleware {
  return async (ctx: Context, next: Next) => {
    const headers = ctx.req.headers;
    if (!JSON_TYPE.test(headers['content-type'] ?? '')) return other(ctx, next);
    const encoding = headers['content-encoding'];
    const decoding = encoding === undefined ? undefined : decodingOf(encoding);
    ctx.request.body = parseJson(await readBody(ctx.req, limitBytes, decoding)) as Context['request']['body'];
    return next();
  };
}

function decodingOf(header: string): Decoding | undefined {
  const name = header.trim().toLowerCase();
  if (name === '' || name === 'identity') return undefined;
  const make = Object.hasOwn(DECODERS, name) ? DECODERS[name] : undefined;
  if (!make) throw new ServiceError('VALIDATION_ERROR', 'Unsupported Content-Encoding: send a JSON body as is, or with gzip, deflate or br', { details: [{ path: '/Content-Encoding', message: 'must be gzip, deflate, br or identity' }] });
  return { name, decoder: make() };
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
  // JSON.parse itself has no depth limit; no more brackets than the limit cannot nest past it.
  if (bracketsPast(text, MAX_JSON_DEPTH) && nestedDeeperThan(value as object, MAX_JSON_DEPTH)) {
    throw new ServiceError('VALIDATION_ERROR', `The body nests objects and arrays more than ${MAX_JSON_DEPTH} deep`);
  }
  if (PROTO_KEY.test(text) && hasProtoKey(value as object)) throw new ServiceError('VALIDATION_ERROR', 'The body has a "__proto__" key, which is refused');
  return value;
}

function notJson(): ServiceError {
  return new ServiceError('VALIDATION_ERROR', 'The body is not valid JSON');
}

// Whether the text holds more than `limit` "{" and "[" (in strings too): a cheap look, made with
// the engine's own search, that lets almost every body skip the walk below.
function bracketsPast(text: string, limit: number): boolean {
  let count = 0;
  for (const bracket of ['{', '[']) {
    for (let at = text.indexOf(bracket); at !== -1; at = text.indexOf(bracket, at + 1)) if (++count > limit) return true;
  }
  return false;
}

// Walks with a stack of its own rather than by recursion, so that no depth can overflow it.
function nestedDeeperThan(root: object, limit: number): boolean {
  const stack: [object, number][] = [[root, 1]];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [value, depth] = item;
    if (depth > limit) return true;
    for (const child of Object.values(value)) if (child !== null && typeof child === 'object') stack.push([child as object, depth + 1]);
  }
  return false;
}

function hasProtoKey(root: object): boolean {
  const stack = [root];
  for (let value = stack.pop(); value; value = stack.pop()) {
    if (Object.hasOwn(value, '__proto__')) return true;
    for (const child of Object.values(value)) if (child !== null && typeof child === 'object') stack.push(child as object);
  }
  return false;
}

/**
 * The body as UTF-8, its bytes counted against `limitBytes` as they arrive (a Content-Length past
 * the limit is refused before reading), and checked against the Content-Length it announced. With
 * a decoding, the bytes it decodes to are counted against the same limit.
 */
export function readBody(req: IncomingMessage, limitBytes: number, decoding?: Decoding): Promise<string> {
  const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  if (declared !== undefined && declared > limitBytes) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => new BodyReader(req, limitBytes, declared, decoding, resolve, reject));
}

/** Collects one request body. Bound methods rather than closures: this runs for every request. */
class BodyReader {
  private readonly chunks: Buffer[] = [];
  private received = 0;
  private decoded = 0;
  private settled = false;
  private readonly onData = this.data.bind(this);
  private readonly onEnd = this.end.bind(this);
  private readonly onError = this.failed.bind(this);

  constructor(
    private readonly req: IncomingMessage,
    private readonly limitBytes: number,
    private readonly declared: number | undefined,
    private readonly decoding: Decoding | undefined,
    private readonly resolve: (text: string) => void,
    private readonly reject: (err: Error) => void,
  ) {
    req.on('data', this.onData);
    req.on('end', this.onEnd);
    // A client that goes away mid-body ends the request with an 'error' (ECONNRESET, "aborted").
    req.on('error', this.onError);
    if (!decoding) return;
    const { decoder, name } = decoding;
    decoder.on('data', (chunk: Buffer) => {
      this.decoded += chunk.length;
      if (this.decoded > this.limitBytes) this.done(tooLarge());
      else this.chunks.push(chunk);
    });
    decoder.on('end', () => this.finish(this.decoded));
    // Stays attached after done(): the decoder may still report what it had in hand.
    decoder.on('error', () => this.done(new ServiceError('VALIDATION_ERROR', `The body is not valid ${name} data, as its Content-Encoding says it is`)));
  }

  private data(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.received > this.limitBytes) this.done(tooLarge());
    else if (this.decoding) this.decoding.decoder.write(chunk);
    else this.chunks.push(chunk);
  }

  private end(): void {
    if (this.declared !== undefined && this.received !== this.declared) return this.done(shortBody());
    if (this.decoding) this.decoding.decoder.end();
    else this.finish(this.received);
  }

  private finish(length: number): void {
    const { chunks } = this;
    this.done(null, chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, length).toString('utf8'));
  }

  private failed(err: Error & { code?: string }): void {
    this.done(err.code === 'ECONNRESET' ? new ServiceError('VALIDATION_ERROR', 'The request was aborted before its body arrived') : err);
  }

  private done(err: Error | null, text = ''): void {
    if (this.settled) return;
    this.settled = true;
    const { req } = this;
    req.off('data', this.onData);
    req.off('end', this.onEnd);
    req.off('error', this.onError);
    if (this.decoding && err) this.decoding.decoder.destroy();
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
