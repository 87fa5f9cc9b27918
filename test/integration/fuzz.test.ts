import { Agent, request } from 'node:http';
import { expect } from 'chai';
import { SignJWT } from 'jose';
import { startEchoHttpServer } from '../../fixtures/mcp/echoServer.js';
import type { EchoHttpServer } from '../../fixtures/mcp/echoServer.js';
import { MAX_ERROR_DETAILS } from '../../src/api/errorHandler.js';
import { FUZZ_METHODS, FUZZ_ROUTES, FuzzRequests } from '../support/fuzzRequests.js';
import type { FuzzRequest, FuzzWorld } from '../support/fuzzRequests.js';
import { waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { script, startWithServers } from '../support/mcpHarness.js';

// Issue 13: bad input of any shape, on any route, gets a 4xx in the envelope, never a 5xx, and the
// server lives on. Deterministic: a failure names the seed and the request's number.
const SEED = 13_2026;
const REQUESTS = 4_000;
const CONCURRENCY = 6;
const JWT_SECRET = 'a-fuzzing-signing-secret-that-is-long-enough';
const BODY_LIMIT = 64 * 1024;
/** What a request may take before it counts as never answered. */
const ANSWER_TIMEOUT_MS = 15_000;
/** The most of a response body read; past it the answer is cut (no error answer is anywhere near). */
const READ_LIMIT = 256 * 1024;
/** The most task ids the requests choose from: those made in before() and then what creates answer. */
const MAX_TASK_IDS = 40;
const ERROR_KEYS = ['code', 'message', 'details', 'detailsOmitted'];
/** Routes whose 2xx answer (to GET or HEAD) is not JSON. */
const RAW_ROUTES: Record<string, RegExp> = {
  '/api/v1/tasks/:id/stream': /^text\/event-stream/,
  '/api/v1/tasks/:id/artifacts/download': /./,
  '/api/v1/tasks/:id/artifacts/archive': /^application\/gzip$/,
};

interface Answer {
  status: number;
  type: string;
  text: string;
}

/** The id of the task a create answered with. */
function createdId(fuzz: FuzzRequest, answer: Answer): string | undefined {
  if (answer.status !== 201 || fuzz.route !== 'POST /api/v1/tasks') return undefined;
  return (JSON.parse(answer.text) as { data: { id: string } }).data.id;
}

function sign(claims: Record<string, unknown>, options: { alg?: string; secret?: string; exp?: string | number } = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'HS256' }).setIssuedAt().setAudience((claims.aud as string) ?? 'airlock').setExpirationTime(options.exp ?? '1h')
    .sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}

const base64url = (value: string) => Buffer.from(value).toString('base64url');

async function badJwts(): Promise<string[]> {
  const user = { sub: 'fuzz-user', project: 'default' };
  return [
    await sign({ sub: { id: 'u' }, project: 'default' }),
    await sign({ sub: ['u'], project: 'default' }),
    await sign({ sub: 7, project: 'default' }),
    await sign({ sub: '', project: 'default' }),
    await sign({ sub: 'u', project: { id: 'default' } }),
    await sign({ sub: 'u', project: 'nope' }),
    await sign({ sub: 'u' }),
    await sign({ ...user, aud: 'elsewhere' }),
    await sign(user, { exp: Math.floor(Date.now() / 1000) - 60 }),
    await sign(user, { secret: 'another-secret-that-is-also-long-enough' }),
    await sign(user, { alg: 'HS512' }),
    `${base64url('{"alg":"none"}')}.${base64url(JSON.stringify({ ...user, aud: 'airlock', exp: 9e9 }))}.`,
    `${base64url('{"alg":"HS256"}')}.${base64url('not json')}.${base64url('sig')}`,
    `eyJ${base64url('{{{')}.${base64url('{}')}.x`,
  ];
}

/** Sends one request; resolves with what came back, or rejects when nothing did in time. */
function send(agent: Agent, baseUrl: string, fuzz: FuzzRequest): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // Said outright: node sends the body of a GET or DELETE with neither, which is a second request.
    const framing = fuzz.body === undefined ? {} : fuzz.chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(fuzz.body.length) };
    const req = request(`${baseUrl}${fuzz.path}`, { method: fuzz.method, headers: { ...fuzz.headers, ...framing }, agent, timeout: ANSWER_TIMEOUT_MS }, (res) => {
      const type = String(res.headers['content-type'] ?? '');
      const chunks: Buffer[] = [];
      let length = 0;
      const done = () => resolve({ status: res.statusCode ?? 0, type, text: Buffer.concat(chunks).toString('utf8') });
      // A stream stays open as long as its task runs: its headers are the answer.
      if (type.startsWith('text/event-stream')) {
        res.destroy();
        return done();
      }
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        length += chunk.length;
        if (length > READ_LIMIT) {
          res.destroy();
          done();
        }
      });
      res.on('end', done);
      res.on('error', done);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${ANSWER_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    if (fuzz.body && fuzz.chunked) {
      req.write(fuzz.body.subarray(0, fuzz.body.length >> 1));
      req.end(fuzz.body.subarray(fuzz.body.length >> 1));
    } else {
      req.end(fuzz.body);
    }
  });
}

/** What is wrong with an answer, or undefined. */
function problemWith(fuzz: FuzzRequest, answer: Answer): string | undefined {
  const { status, type, text } = answer;
  if (status >= 500) return `answered ${status}: ${text.slice(0, 200)}`;
  if (status < 200 || (status >= 300 && status < 400)) return `answered ${status}`;
  const [method, route] = fuzz.route.split(' ') as [string, string];
  const raw = status < 300 && (method === 'GET' || method === 'HEAD') ? RAW_ROUTES[route] : undefined;
  if (raw) return raw.test(type) ? undefined : `a 2xx of type "${type}"`;
  if (!/^application\/json/.test(type)) return `answered ${status} with type "${type}", not JSON`;
  if (fuzz.method === 'HEAD') return text === '' ? undefined : 'a body on HEAD';
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    return `answered ${status} with a body that is not JSON: ${text.slice(0, 200)}`;
  }
  if (status < 300) return body?.success === true && 'data' in body && Object.keys(body).every((k) => ['success', 'data', 'pagination'].includes(k)) ? undefined : `a 2xx outside the envelope: ${text.slice(0, 200)}`;
  const error = body?.error;
  const inEnvelope = body?.success === false && Object.keys(body).length === 2 && error && typeof error === 'object'
    && /^[A-Z][A-Z_]+$/.test(error.code) && typeof error.message === 'string' && error.message !== ''
    && Object.keys(error).every((k) => ERROR_KEYS.includes(k))
    && (error.details === undefined || (Array.isArray(error.details) ? error.details.length <= MAX_ERROR_DETAILS : typeof error.details === 'object'));
  if (!inEnvelope) return `a ${status} outside the error envelope: ${text.slice(0, 300)}`;
  if (text.length > 32 * 1024) return `a ${status} error of ${text.length} bytes`;
  return undefined;
}

/** A call that was decided (or whose task ended) waits no more: approvals go to the others. */
function forgetDecided(world: FuzzWorld, fuzz: FuzzRequest, answer: Answer): void {
  if (fuzz.route !== 'POST /api/v1/tasks/:id/tools/:callId/approve' || (answer.status !== 200 && answer.status !== 409)) return;
  const id = fuzz.path.split('/')[4]?.toLowerCase();
  const at = world.waitingIds.indexOf(id ?? '');
  if (at >= 0 && world.waitingIds.length > 1) world.waitingIds.splice(at, 1);
}

describe(`Fuzzing every route (issue 13): ${REQUESTS} seeded requests`, function () {
  this.timeout(120_000);
  let echo: EchoHttpServer;
  let airlock: TestAirlock;
  let world: FuzzWorld;

  before(async () => {
    echo = await startEchoHttpServer();
    airlock = await startWithServers({ echo: { type: 'http', url: echo.url } }, {
      project: { builtinTools: false },
      // A run waiting for approval holds its slot: room for all the waiting tasks the requests make.
      config: { server: { bodyLimitBytes: BODY_LIMIT, shutdownGraceMs: 100 }, tasks: { concurrency: 200 }, uploads: { maxFiles: 3, maxFileBytes: 4096 } },
      env: { AIRLOCK_JWT_SECRET: JWT_SECRET },
    });
    const jwt = await sign({ sub: 'fuzz-user', project: 'default' });
    // Real tasks for the id routes: one finished with a file in its workspace, one waiting for an
    // approval, one of the JWT's end user.
    const form = new FormData();
    form.set('message', '/reply stored');
    form.append('files', new Blob(['hello']), 'a.txt');
    const stored = await airlock.api('/tasks', { method: 'POST', body: form });
    const waiting = await airlock.api('/tasks', { method: 'POST', json: { message: script(['echo__whoami', {}]), autoExecute: false } });
    const own = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply mine' }, key: jwt });
    for (const res of [stored, waiting, own]) expect(res.status, res.text).to.equal(201);
    await waitForStatus(airlock, stored.body.data.id, ['completed']);
    await waitForStatus(airlock, waiting.body.data.id, ['awaiting_approval'], 20_000);
    world = {
      key: airlock.key,
      jwts: [jwt, await sign({ sub: 'fuzz-other', project: 'default' })],
      badJwts: await badJwts(),
      taskIds: [stored.body.data.id, waiting.body.data.id, own.body.data.id],
      waitingIds: [waiting.body.data.id],
      callIds: ['toolu_scripted_1'],
    };
  });

  after(async () => {
    await airlock?.stop();
    await echo?.close();
  });

  it('answers every request below 500, every error in the envelope, and lives on', async () => {
    const requests = new FuzzRequests(SEED, world);
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const problems: string[] = [];
    const statuses = new Map<number, number>();
    const routes = new Set<string>();
    let sent = 0;
    const worker = async () => {
      while (sent < REQUESTS) {
        const index = sent++;
        const fuzz = requests.next();
        routes.add(fuzz.route);
        try {
          const answer = await send(agent, airlock.url, fuzz);
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
          const problem = problemWith(fuzz, answer);
          const id = problem ? undefined : createdId(fuzz, answer);
          if (id && world.taskIds.length < MAX_TASK_IDS) world.taskIds.push(id);
          if (id && fuzz.body?.includes('"autoExecute":false') && world.waitingIds.length < MAX_TASK_IDS) world.waitingIds.push(id);
          forgetDecided(world, fuzz, answer);
          if (problem) problems.push(`#${index} ${fuzz.method} ${fuzz.path.slice(0, 120)} (${fuzz.headers['content-type'] ?? '-'}, ${fuzz.headers['content-encoding'] ?? '-'}): ${problem}`);
        } catch (err) {
          problems.push(`#${index} ${fuzz.method} ${fuzz.path.slice(0, 120)}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    agent.destroy();
    const counts = JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)));
    expect(problems.slice(0, 20), `${problems.length} bad answers (seed ${SEED}; statuses ${counts})`).to.deep.equal([]);
    for (const route of FUZZ_ROUTES) for (const method of FUZZ_METHODS) expect(routes, 'every route was tried with every method').to.include(`${method} ${route.path}`);
    expect(airlock.logs.filter((line) => line.includes('"unexpected error"')).slice(0, 3), 'INTERNAL_ERROR lines in the log').to.deep.equal([]);

    // Alive and still serving: the health check, and a task run to its end.
    expect((await airlock.api('/healthz')).status).to.equal(200);
    const after = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply still here' } });
    expect(after.status, after.text).to.equal(201);
    expect((await waitForStatus(airlock, after.body.data.id, ['completed'], 20_000)).output.content).to.equal('still here');
  });
});
