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
  /** Ids of real tasks (some finished, some waiting for approval); the runner adds those it creates. */
  taskIds: string[];
  /** Tasks among them that were made waiting for an approval (some may be decided by now). */
  waitingIds: string[];
  /** Call ids some of those tasks wait on. */
  callIds: string[];
}

/** Every route of API.md, the body each takes, and its query parameters. */
export const FUZZ_ROUTES: { method: string; path: string; body?: 'create' | 'followUp' | 'approve' | 'input'; query: string[] }[] = [
  { method: 'POST', path: '/api/v1/tasks', body: 'create', query: [] },
  { method: 'GET', path: '/api/v1/tasks', query: ['limit', 'offset', 'includeHidden', 'status', 'scope', 'cursor'] },
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
  { method: 'GET', path: '/readyz', query: [] },
];

const MAX_URL_CHARS = 8_000;
// Methods node's HTTP parser knows (others never reach the app); CONNECT is a tunnel, not a request.
export const FUZZ_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE'];
const STRINGS = ['', ' ', 'x', '/reply fuzz', '/reply a\nb', '/fail fuzzed', '/call echo__echo {"text":"x"}', '/call echo__echo {"text":', '/call nope {}', '/think t\n/reply r',
  '\u0000', '\ud800', '\u202etxt.exe', 'é'.repeat(40), '../../etc/passwd', '%00', '{{mcp.KEY}}', '[secret:X]', '<script>', 'a'.repeat(3000)];
const KEYS = ['message', 'env', 'secrets', 'args', 'content', 'outcome', 'action', 'reason', '__proto__', 'constructor', 'prototype', 'toString', '', 'a/b~c', '1', 'A_B', '9BAD', 'é', 'x'.repeat(300)];
const NUMBERS = [0, -0, 1, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 100, 101];
const QUERY_VALUES = ['', '0', '1', '-1', '50', '101', '1e3', '0x10', 'true', 'false', 'TRUE', 'null', 'pending', 'running', 'project', 'key', 'uploads/a.txt', 'uploads', '..', '../x', '/etc/passwd',
  '%00', '%zz', '%', '%C0%AF', '%E2%80%AE', encodeURIComponent('é'), 'a'.repeat(300), 'b'.repeat(5000), `${'c/'.repeat(2100)}d`, '__proto__', '9007199254740993',
  // Cursors of GET /tasks: base64url JSON of the right shape with wrong values, and of others.
  ...['["2026-01-01T00:00:00.000Z",1,0]', '["2026-01-01T00:00:00.000Z",-1,1e300]', '["x",1,2]', '[1,2,3]', '{"a":1}', '[[[[[]]]]]', 'null'].map((json) => Buffer.from(json).toString('base64url'))];
const SEGMENTS = ['', 'not-a-uuid', '..', '%2e%2e', '%2F', '%', '%zz', '%00', '%C0%AF', 'a'.repeat(3000), encodeURIComponent('ünï'), '00000000-0000-0000-0000-000000000000', '__proto__', 'toolu_scripted_1', 'apr_x'];
const CONTENT_TYPES = ['application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'application/vnd.airlock+json', 'APPLICATION/JSON', 'application/jsonx', 'text/plain',
  'application/x-www-form-urlencoded', 'multipart/form-data', 'multipart/form-data; boundary=', 'multipart/mixed; boundary=b', 'application/octet-stream', '*/*', ';;', 'x'];
const ENCODINGS = ['identity', 'x-gzip', 'gzip, br', 'GZIP', 'Br', 'compress', 'zstd', '', ' gzip ', 'deflate;q=1'];
const FILE_NAMES = ['a.txt', '../../escape.txt', '/abs.txt', 'C:\\win.txt', '', '.', '..', 'con', 'x'.repeat(1000) + '.txt', 'ünï.txt', 'bad.zip', 'bad.tar.gz', 'a\u202etxt.exe', 'sp ace.txt'];

// Routes that take a body have the most to get wrong: they come up three times as often.
const WEIGHTED_ROUTES = FUZZ_ROUTES.flatMap((route) => (route.body ? [route, route, route] : [route]));
type BodyKind = 'create' | 'followUp' | 'approve' | 'input';
/**
 * What one request gets wrong; the rest of it is valid, so that the fault meets the code behind
 * everything that comes before it. 'chaos' gets everything wrong at once.
 */
type Focus = 'auth' | 'path' | 'method' | 'query' | 'headers' | 'type' | 'encoding' | 'json' | 'fields' | 'multipart' | 'chaos';
const FOCI: Focus[] = ['auth', 'path', 'method', 'query', 'headers', 'type', 'encoding', 'json', 'json', 'json', 'fields', 'fields', 'multipart', 'chaos'];

/** A seeded source of hostile requests: the same seed gives the same requests, in the same order. */
export class FuzzRequests {
  private state: number;
  private focus: Focus = 'chaos';
  private methodTurns = 0;

  constructor(seed: number, private readonly world: FuzzWorld) {
    this.state = seed >>> 0;
  }

  next(): FuzzRequest {
    this.focus = this.pick(FOCI);
    // Requests about methods go round every route with every method in turn.
    const turn = this.focus === 'method' ? this.methodTurns++ : undefined;
    const route = turn === undefined ? this.pick(WEIGHTED_ROUTES) : FUZZ_ROUTES[turn % FUZZ_ROUTES.length]!;
    const method = turn !== undefined ? FUZZ_METHODS[Math.floor(turn / FUZZ_ROUTES.length) % FUZZ_METHODS.length]! : this.wrong('method') ? this.pick(FUZZ_METHODS) : route.method;
    const odd = this.wrong('path') && this.chance(0.15) ? this.pick(['/', '/api', '/api/v1', '/api/v2/tasks', '/api/v1/tasks/', '//api//v1//tasks', '/healthz/', '/api/v1/TASKS', '/.env']) : undefined;
    const path = odd ?? this.fill(route.path);
    const headers: Record<string, string> = { ...this.auth(), ...(this.wrong('headers') ? this.extraHeaders(route.path) : {}) };
    // Node answers a request line and headers past 16 KiB itself (431), before the app sees them.
    const query = this.wrong('query') ? this.query(route.query).slice(0, MAX_URL_CHARS - path.length) : '';
    const withBody = route.body !== undefined || (this.focus === 'chaos' && this.chance(0.3));
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

  private wrong(aspect: Focus): boolean {
    return this.focus === aspect || (this.focus === 'chaos' && this.chance(0.5));
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
    const { taskIds, waitingIds, callIds } = this.world;
    const wrong = this.wrong('path');
    // Approvals are sent mostly to tasks that were made waiting for one.
    const real = () => this.pick(template.includes(':callId') && this.chance(0.8) ? waitingIds : taskIds);
    const id = () => (!wrong || this.chance(0.3) ? real() : this.chance(0.2) ? real().toUpperCase() : this.chance(0.3) ? this.uuid() : this.pick(SEGMENTS));
    return template
      .replace(':id', id)
      .replace(':callId', () => (!wrong || this.chance(0.3) ? this.pick(callIds) : this.pick(SEGMENTS)))
      .replace(':requestId', () => (wrong ? this.pick(SEGMENTS) : 'req-1'));
  }

  private auth(): Record<string, string> {
    const { key, jwts, badJwts } = this.world;
    if (!this.wrong('auth')) return this.chance(0.85) ? { authorization: `Bearer ${key}` } : { authorization: `Bearer ${this.pick(jwts)}` };
    if (this.chance(0.15)) return { 'x-api-key': key };
    if (this.chance(0.5)) return { authorization: `Bearer ${this.pick(badJwts)}` };
    return this.pick<Record<string, string>>([{}, { authorization: '' }, { authorization: 'Bearer' }, { authorization: `bearer   ${key}  ` }, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
      { authorization: `Bearer airlock_${'0'.repeat(64)}` }, { authorization: `Bearer airlock_${'A'.repeat(64)}` }, { authorization: `Bearer ${key} ${key}` }, { 'x-api-key': 'eyJ' },
      { authorization: `Bearer ${'eyJ'.padEnd(6000, 'x')}` }, { authorization: 'Bearer eyJ.eyJ.' }, { authorization: `Bearer ${key}`, 'x-api-key': 'nonsense' }]);
  }

  private extraHeaders(route: string): Record<string, string> {
    const headers: Record<string, string> = {};
    if (this.chance(0.5)) headers['x-request-id'] = this.pick(['ok-id.1', '', 'x'.repeat(200), 'bad id', '\t', '../x', '%00']);
    if (route.endsWith('/stream') || this.chance(0.2)) headers['last-event-id'] = this.pick(['0', '1', '-1', 'abc', ' 3 ', '9'.repeat(30), '1e3', '', '0x1']);
    if (this.chance(0.3)) headers.origin = this.pick(['https://evil.example', 'null', '*']);
    if (this.chance(0.3)) headers.accept = this.pick(['text/event-stream', '*/*', 'application/xml', '']);
    if (this.chance(0.2)) headers['x-forwarded-for'] = '1.2.3.4, ::1';
    if (this.chance(0.2)) headers.expect = '100-continue';
    return headers;
  }

  private query(known: string[]): string {
    const pairs: string[] = [];
    for (let i = 1 + this.int(4); i > 0; i--) {
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

  /** A body the route takes; with the focus on fields, with wrong or unknown fields, or very many. */
  private fields(kind: BodyKind): Record<string, unknown> {
    const valid: Record<BodyKind, () => Record<string, unknown>> = {
      // Often a call that waits for approval, so that approve routes meet calls to decide: whoami
      // takes any object, so edited args of any shape get past its schema to the gate.
      create: () => (this.chance(0.5) ? { message: this.pick(['/call echo__whoami {}', '/call echo__echo {"text":"x"}']), autoExecute: false } : { message: this.pick(['/reply fuzz', '/fail fuzzed', 'hello']) }),
      followUp: () => ({ message: '/reply more' }),
      approve: () => ({ outcome: this.pick(['proceed_once', 'proceed_always', 'cancel']), ...(this.chance(0.3) ? { args: { text: 'edited' } } : {}) }),
      input: () => ({ action: this.pick(['accept', 'decline', 'cancel']), ...(this.chance(0.3) ? { content: { a: 1 } } : {}) }),
    };
    const fields = valid[kind]();
    if (!this.wrong('fields')) return fields;
    const roll = this.random();
    if (roll < 0.5) for (let i = 1 + this.int(2); i > 0; i--) fields[this.pick(KEYS)] = this.value(0);
    else if (roll < 0.8) fields[this.pick(['env', 'secrets'])] = Object.fromEntries(Array.from({ length: 1 + this.int(30) }, () => [this.pick(KEYS), this.value(2)]));
    else if (roll < 0.9) for (let i = 0; i < 2000 + this.int(3000); i++) fields[`unknown${i}`] = i;
    else fields[this.pick(Object.keys(fields))] = this.value(0);
    return fields;
  }

  /** JSON text from `fields`; with the focus on JSON, broken: nested past any limit, `__proto__` keys, truncated, BOMs, other top-level types. */
  private jsonText(kind: BodyKind, fields: Record<string, unknown>): string {
    const text = JSON.stringify(fields);
    if (!this.wrong('json')) return text;
    const roll = this.random();
    if (roll < 0.35) {
      const depth = this.pick([50, 126, 127, 128, 129, 1_000, 5_000, 5_000, 10_000, 10_000]);
      const inner = this.chance(0.5) ? '{"__proto__":{"x":1}}' : '{}';
      const [open, close] = this.chance(0.7) ? ['{"a":', '}'] : ['[', ']'];
      const field = kind === 'approve' ? 'args' : kind === 'input' ? 'content' : this.pick(['env', 'message', 'extra']);
      // In place of the field's own value: JSON.parse keeps the last of two equal keys.
      const rest = JSON.stringify({ ...fields, [field]: undefined });
      return `{"${field}":${open.repeat(depth)}${inner}${close.repeat(depth)}${rest.length > 2 ? ',' : ''}${rest.slice(1)}`;
    }
    if (roll < 0.45) return text.replace('{', this.pick(['{"__proto__":{"admin":true},', '{"\\u005f_proto__":1,', '{"constructor":{"prototype":{}},']));
    if (roll < 0.55) return text.slice(0, this.int(text.length));
    if (roll < 0.6) return `\ufeff${text}`;
    if (roll < 0.75) return this.pick(['null', '[]', '"x"', '42', 'true', '', ' ', '{', '}', '{"message":"x",}', '{"message":"x"}{"a":1}', '{"message":"\\ud800"}', '{"a":1e99999}', 'NaN']);
    if (roll < 0.85) return `${text.slice(0, -1)},"pad":"${'p'.repeat(60_000 + this.int(20_000))}"}`;
    if (roll < 0.9) return text.replace(/"message":"/, '"message":"\\u0000\\uDFFF');
    return `${text.slice(0, text.length >> 1)}\u0000\uFFFF${text.slice(text.length >> 1)}`;
  }

  private body(kind: BodyKind, headers: Record<string, string>): Partial<FuzzRequest> {
    let body: Buffer;
    if (this.wrong('multipart') && (kind === 'create' || kind === 'followUp' || this.chance(0.2))) {
      const boundary = `fuzz${this.int(1e9)}`;
      body = this.multipart(boundary, kind);
      headers['content-type'] = this.chance(0.85) ? `multipart/form-data; boundary=${boundary}` : this.pick(['multipart/form-data', `multipart/form-data; boundary=other`, `multipart/form-data; boundary="${boundary}"`]);
    } else if (this.wrong('type')) {
      body = this.chance(0.5) ? Buffer.from(this.jsonText(kind, this.fields(kind))) : this.chance(0.5) ? Buffer.from(Array.from({ length: this.int(2000) }, () => this.int(256))) : Buffer.from(this.pick(['message=hi', 'a=1&a=2', '--x--', '\r\n\r\n']));
      if (this.chance(0.9)) headers['content-type'] = this.pick(CONTENT_TYPES);
    } else {
      body = Buffer.from(this.jsonText(kind, this.fields(kind)));
      if (this.wrong('json') && this.chance(0.1)) body = Buffer.concat([body.subarray(0, body.length >> 1), Buffer.from([0xff, 0xfe, 0xc0]), body.subarray(body.length >> 1)]);
      headers['content-type'] = 'application/json';
    }
    if (this.wrong('encoding')) {
      const roll = this.random();
      if (roll < 0.4) {
        headers['content-encoding'] = this.pick(['gzip', 'deflate', 'br', 'x-gzip']);
      } else if (roll < 0.6) {
        headers['content-encoding'] = this.pick(ENCODINGS);
      } else {
        body = this.compressed(body, headers);
        body = body.subarray(0, this.int(body.length));
      }
    } else if (this.chance(0.15)) {
      body = this.compressed(body, headers);
    }
    return { body };
  }

  private compressed(body: Buffer, headers: Record<string, string>): Buffer {
    const name = this.pick(['gzip', 'deflate', 'br']);
    headers['content-encoding'] = name;
    return name === 'gzip' ? gzipSync(body) : name === 'deflate' ? deflateSync(body) : brotliCompressSync(body);
  }

  private multipart(boundary: string, kind: BodyKind): Buffer {
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
