import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';

/** One generated request, sent as it is. */
export interface FuzzRequest {
  method: string;
  /** Path and query, already percent-encoded where they need to be. */
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Send the body in two writes without a Content-Length (chunked). */
  chunked: boolean;
  /** Method and the route template it was made from. */
  route: string;
}

/** What the generated requests may name: real credentials and ids, and hostile ones. */
export interface FuzzWorld {
  key: string;
  /** Valid end-user JWTs. */
  jwts: string[];
  /** Signed or unsigned JWTs that must be refused. */
  badJwts: string[];
  /** Ids of real tasks (some finished, one waiting for approval). */
  taskIds: string[];
  /** Call ids some of those tasks wait on. */
  callIds: string[];
}

/** Every route of API.md, the body each takes, and its query parameters. */
export const FUZZ_ROUTES: { method: string; path: string; body?: 'create' | 'followUp' | 'approve' | 'input'; query: string[] }[] = [
  { method: 'POST', path: '/api/v1/tasks', body: 'create', query: [] },
  { method: 'GET', path: '/api/v1/tasks', query: ['limit', 'offset', 'includeHidden', 'status', 'scope'] },
  { method: 'GET', path: '/api/v1/tasks/:id', query: [] },
  { method: 'POST', path: '/api/v1/tasks/:id/messages', body: 'followUp', query: [] },
  { method: 'DELETE', path: '/api/v1/tasks/:id', query: [] },
  { method: 'POST', path: '/api/v1/tasks/:id/tools/:callId/approve', body: 'approve', query: [] },
  { method: 'POST', path: '/api/v1/tasks/:id/inputs/:requestId', body: 'input', query: [] },
  { method: 'GET', path: '/api/v1/tasks/:id/approvals', query: [] },
  { method: 'GET', path: '/api/v1/tasks/:id/history', query: [] },
  { method: 'GET', path: '/api/v1/tasks/:id/stream', query: ['after'] },
  { method: 'GET', path: '/api/v1/tasks/:id/artifacts', query: [] },
  { method: 'GET', path: '/api/v1/tasks/:id/artifacts/download', query: ['path'] },
  { method: 'GET', path: '/api/v1/tasks/:id/artifacts/archive', query: [] },
  { method: 'GET', path: '/healthz', query: [] },
];

const MAX_URL_CHARS = 8_000;
// Methods node's HTTP parser knows (others never reach the app); CONNECT is a tunnel, not a request.
export const FUZZ_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE'];
const STRINGS = ['', ' ', 'x', '/reply fuzz', '/reply a\nb', '/fail fuzzed', '/call echo__echo {"text":"x"}', '/call echo__echo {"text":', '/call nope {}', '/think t\n/reply r',
  '\u0000', '\ud800', '\u202etxt.exe', 'é'.repeat(40), '../../etc/passwd', '%00', '{{mcp.KEY}}', '[secret:X]', '<script>', 'a'.repeat(3000)];
const KEYS = ['message', 'env', 'secrets', 'args', 'content', 'outcome', 'action', 'reason', '__proto__', 'constructor', 'prototype', 'toString', '', 'a/b~c', '1', 'A_B', '9BAD', 'é', 'x'.repeat(300)];
const NUMBERS = [0, -0, 1, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 100, 101];
const QUERY_VALUES = ['', '0', '1', '-1', '50', '101', '1e3', '0x10', 'true', 'false', 'TRUE', 'null', 'pending', 'running', 'project', 'key', 'uploads/a.txt', 'uploads', '..', '../x', '/etc/passwd',
  '%00', '%zz', '%', '%C0%AF', '%E2%80%AE', encodeURIComponent('é'), 'a'.repeat(300), 'b'.repeat(5000), `${'c/'.repeat(2100)}d`, '__proto__', '9007199254740993'];
const SEGMENTS = ['', 'not-a-uuid', '..', '%2e%2e', '%2F', '%', '%zz', '%00', '%C0%AF', 'a'.repeat(3000), encodeURIComponent('ünï'), '00000000-0000-0000-0000-000000000000', '__proto__', 'toolu_scripted_1', 'apr_x'];
const CONTENT_TYPES = ['application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'application/vnd.airlock+json', 'APPLICATION/JSON', 'application/jsonx', 'text/plain',
  'application/x-www-form-urlencoded', 'multipart/form-data', 'multipart/form-data; boundary=', 'multipart/mixed; boundary=b', 'application/octet-stream', '*/*', ';;', 'x'];
const ENCODINGS = ['identity', 'x-gzip', 'gzip, br', 'GZIP', 'Br', 'compress', 'zstd', '', ' gzip ', 'deflate;q=1'];
const FILE_NAMES = ['a.txt', '../../escape.txt', '/abs.txt', 'C:\\win.txt', '', '.', '..', 'con', 'x'.repeat(1000) + '.txt', 'ünï.txt', 'bad.zip', 'bad.tar.gz', 'a\u202etxt.exe', 'sp ace.txt'];

/** A seeded source of hostile requests: the same seed gives the same requests, in the same order. */
export class FuzzRequests {
  private state: number;

  constructor(seed: number, private readonly world: FuzzWorld) {
    this.state = seed >>> 0;
  }

  next(): FuzzRequest {
    const known = this.chance(0.7);
    const route = this.pick(FUZZ_ROUTES);
    const method = known ? route.method : this.pick(FUZZ_METHODS);
    const odd = this.chance(0.03) ? this.pick(['/', '/api', '/api/v1', '/api/v2/tasks', '/api/v1/tasks/', '//api//v1//tasks', '/healthz/', '/api/v1/TASKS', '/.env']) : undefined;
    const path = odd ?? this.fill(route.path);
    const headers: Record<string, string> = { ...this.auth(), ...this.extraHeaders(route.path) };
    // Node answers a request line and headers past 16 KiB itself (431), before the app sees them.
    const query = this.query(route.query).slice(0, MAX_URL_CHARS - path.length);
    const withBody = route.body !== undefined ? this.chance(0.95) : this.chance(0.1);
    const request: FuzzRequest = { method, path: query ? `${path}?${query}` : path, headers, chunked: this.chance(0.15), route: `${method} ${odd ?? route.path}` };
    if (withBody && method !== 'HEAD' && method !== 'TRACE') Object.assign(request, this.body(route.body ?? this.pick(['create', 'followUp', 'approve', 'input'] as const), headers));
    return request;
  }

  /** A number in [0, 1): mulberry32. */
  random(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  private chance(p: number): boolean {
    return this.random() < p;
  }

  private int(max: number): number {
    return Math.floor(this.random() * max);
  }

  private pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  private uuid(): string {
    const hex = Array.from({ length: 32 }, () => this.int(16).toString(16)).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20)}`;
  }

  private fill(template: string): string {
    const { taskIds, callIds } = this.world;
    return template
      .replace(':id', () => (this.chance(0.6) ? this.pick(taskIds) : this.chance(0.2) ? this.pick(taskIds).toUpperCase() : this.chance(0.3) ? this.uuid() : this.pick(SEGMENTS)))
      .replace(':callId', () => (this.chance(0.5) ? this.pick(callIds) : this.pick(SEGMENTS)))
      .replace(':requestId', () => this.pick(SEGMENTS));
  }

  private auth(): Record<string, string> {
    const { key, jwts, badJwts } = this.world;
    const roll = this.random();
    if (roll < 0.45) return { authorization: `Bearer ${key}` };
    if (roll < 0.52) return { 'x-api-key': key };
    if (roll < 0.65) return { authorization: `Bearer ${this.pick(jwts)}` };
    if (roll < 0.82) return { authorization: `Bearer ${this.pick(badJwts)}` };
    return this.pick<Record<string, string>>([{}, { authorization: '' }, { authorization: 'Bearer' }, { authorization: `bearer   ${key}  ` }, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
      { authorization: `Bearer airlock_${'0'.repeat(64)}` }, { authorization: `Bearer airlock_${'A'.repeat(64)}` }, { authorization: `Bearer ${key} ${key}` }, { 'x-api-key': 'eyJ' },
      { authorization: `Bearer ${'eyJ'.padEnd(6000, 'x')}` }, { authorization: 'Bearer eyJ.eyJ.' }, { authorization: `Bearer ${key}`, 'x-api-key': 'nonsense' }]);
  }

  private extraHeaders(route: string): Record<string, string> {
    const headers: Record<string, string> = {};
    if (this.chance(0.3)) headers['x-request-id'] = this.pick(['ok-id.1', '', 'x'.repeat(200), 'bad id', '\t', '../x', '%00']);
    if (route.endsWith('/stream') && this.chance(0.5)) headers['last-event-id'] = this.pick(['0', '1', '-1', 'abc', ' 3 ', '9'.repeat(30), '1e3', '', '0x1']);
    if (this.chance(0.1)) headers.origin = this.pick(['https://evil.example', 'null', '*']);
    if (this.chance(0.1)) headers.accept = this.pick(['text/event-stream', '*/*', 'application/xml', '']);
    if (this.chance(0.05)) headers['x-forwarded-for'] = '1.2.3.4, ::1';
    return headers;
  }

  private query(known: string[]): string {
    const count = this.chance(0.5) ? 0 : 1 + this.int(4);
    const pairs: string[] = [];
    for (let i = 0; i < count; i++) {
      const name = known.length && this.chance(0.7) ? this.pick(known) : this.pick(['limit', 'path', '__proto__', 'constructor', 'x', 'a[b]', 'a.b', '', 'after', '%zz']);
      pairs.push(`${name}=${this.pick(QUERY_VALUES)}`);
    }
    return pairs.join('&');
  }

  private value(depth: number): unknown {
    const roll = this.random();
    if (depth > 3 || roll < 0.35) return this.pick(STRINGS);
    if (roll < 0.45) return this.pick(NUMBERS);
    if (roll < 0.55) return this.pick([true, false, null]);
    if (roll < 0.7) return Array.from({ length: this.int(4) }, () => this.value(depth + 1));
    const object: Record<string, unknown> = {};
    for (let i = this.int(4); i > 0; i--) object[this.pick(KEYS)] = this.value(depth + 1);
    return object;
  }

  /** A body shaped like the route's, each field either valid or not, and sometimes more fields. */
  private fields(kind: 'create' | 'followUp' | 'approve' | 'input'): Record<string, unknown> {
    const valid: Record<string, () => unknown> = {
      create: () => ({ message: this.pick(['/reply fuzz', '/call echo__echo {"text":"x"}', '/fail fuzzed', 'hello']), ...(this.chance(0.3) ? { autoExecute: this.chance(0.5) } : {}) }),
      followUp: () => ({ message: '/reply more' }),
      approve: () => ({ outcome: this.pick(['proceed_once', 'proceed_always', 'cancel']), ...(this.chance(0.3) ? { args: { text: 'edited' } } : {}) }),
      input: () => ({ action: this.pick(['accept', 'decline', 'cancel']), ...(this.chance(0.3) ? { content: { a: 1 } } : {}) }),
    };
    const fields = valid[kind]!() as Record<string, unknown>;
    for (let i = this.int(3); i > 0; i--) fields[this.pick(KEYS)] = this.value(0);
    if (this.chance(0.15)) fields.env = Object.fromEntries(Array.from({ length: 1 + this.int(30) }, () => [this.pick(KEYS), this.value(2)]));
    if (this.chance(0.03)) for (let i = 0; i < 2000 + this.int(3000); i++) fields[`unknown${i}`] = i;
    return fields;
  }

  /** JSON text from `fields`, often broken: nested past any limit, `__proto__` keys, truncated, BOMs, other top-level types. */
  private jsonText(fields: Record<string, unknown>): string {
    const text = JSON.stringify(fields);
    const roll = this.random();
    if (roll < 0.55) return text;
    if (roll < 0.65) {
      const depth = this.pick([50, 126, 127, 128, 129, 1_000, 10_000]);
      const inner = this.chance(0.5) ? '{"__proto__":{"x":1}}' : '[]';
      const [open, close] = this.chance(0.5) ? ['{"a":', '}'] : ['[', ']'];
      return `{"${this.pick(['args', 'env', 'content', 'message', 'extra'])}":${open.repeat(depth)}${inner}${close.repeat(depth)}${text.length > 2 ? ',' : ''}${text.slice(1)}`;
    }
    if (roll < 0.7) return text.replace('{', this.pick(['{"__proto__":{"admin":true},', '{"\\u005f_proto__":1,', '{"constructor":{"prototype":{}},']));
    if (roll < 0.75) return text.slice(0, this.int(text.length));
    if (roll < 0.8) return `\ufeff${text}`;
    if (roll < 0.85) return this.pick(['null', '[]', '"x"', '42', 'true', '', ' ', '{', '}', '{"message":"x",}', '{"message":"x"}{"a":1}', '{"message":"\\ud800"}', '{"a":1e99999}', 'NaN']);
    if (roll < 0.9) return `${text.slice(0, -1)},"pad":"${'p'.repeat(60_000 + this.int(20_000))}"}`;
    return text.replace(/"message":"/, '"message":"\\u0000\\uDFFF');
  }

  private body(kind: 'create' | 'followUp' | 'approve' | 'input', headers: Record<string, string>): Partial<FuzzRequest> {
    const roll = this.random();
    let body: Buffer;
    if (roll < 0.2 && (kind === 'create' || kind === 'followUp')) {
      const boundary = `fuzz${this.int(1e9)}`;
      body = this.multipart(boundary, kind);
      headers['content-type'] = this.chance(0.85) ? `multipart/form-data; boundary=${boundary}` : this.pick(['multipart/form-data', `multipart/form-data; boundary=other`, `multipart/form-data; boundary="${boundary}"`]);
    } else if (roll < 0.25) {
      body = this.chance(0.5) ? Buffer.from(Array.from({ length: this.int(2000) }, () => this.int(256))) : Buffer.from(this.pick(['message=hi', 'a=1&a=2', '--x--', '\r\n\r\n']));
      if (this.chance(0.8)) headers['content-type'] = this.pick(CONTENT_TYPES);
    } else {
      body = Buffer.from(this.jsonText(this.fields(kind)));
      if (this.chance(0.05)) body = Buffer.concat([body.subarray(0, body.length >> 1), Buffer.from([0xff, 0xfe, 0xc0]), body.subarray(body.length >> 1)]);
      headers['content-type'] = this.chance(0.85) ? 'application/json' : this.pick(CONTENT_TYPES);
    }
    const encoding = this.random();
    if (encoding < 0.12) {
      const name = this.pick(['gzip', 'deflate', 'br']);
      headers['content-encoding'] = name;
      body = name === 'gzip' ? gzipSync(body) : name === 'deflate' ? deflateSync(body) : brotliCompressSync(body);
      if (this.chance(0.2)) body = body.subarray(0, this.int(body.length));
    } else if (encoding < 0.2) {
      headers['content-encoding'] = this.pick(['gzip', 'deflate', 'br', 'x-gzip']);
    } else if (encoding < 0.25) {
      headers['content-encoding'] = this.pick(ENCODINGS);
    }
    return { body };
  }

  private multipart(boundary: string, kind: 'create' | 'followUp'): Buffer {
    const parts: Buffer[] = [];
    const field = (name: string, value: string) => parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`));
    if (this.chance(0.8)) field('message', this.pick(['/reply form', '', 'x', '/call echo__echo {"text":"y"}']));
    for (let i = this.int(3); i > 0; i--) field(this.pick([...KEYS.slice(0, 8), 'showInHistory', 'autoExecute', 'systemPrompt', 'message']), this.pick(['true', 'FALSE', '1', 'yes', '', '{"A":"b"}']));
    for (let i = this.chance(0.5) ? this.int(4) : 0; i > 0; i--) {
      const name = this.pick(FILE_NAMES);
      const content = name.endsWith('.zip') || name.endsWith('.gz') ? Buffer.from([0x50, 0x4b, 0x03, 0x04, ...Array.from({ length: 60 }, () => this.int(256))]) : Buffer.from('file body');
      parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${this.chance(0.8) ? 'files' : 'file'}"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`), content, Buffer.from('\r\n'));
    }
    if (kind === 'followUp' && this.chance(0.2)) field('env', '{"A":"b"}');
    if (!this.chance(0.1)) parts.push(Buffer.from(`--${boundary}--\r\n`));
    return Buffer.concat(parts);
  }
}
