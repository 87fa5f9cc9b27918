import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { connect } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { expect } from 'chai';
import { SignJWT } from 'jose';
import * as z from 'zod';
import { createEchoServer } from '../../fixtures/mcp/echoServer.js';
import { textResult } from '../../fixtures/mcp/fixtureSupport.js';
import { startSessionfulHttp } from '../../fixtures/mcp/sessionfulHttp.js';
import { MAX_JSON_DEPTH } from '../../src/api/jsonBody.js';
import { MAX_ERROR_DETAILS } from '../../src/api/errorHandler.js';
import { startTestAirlock, TEST_KEY, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { script, startWithServers } from '../support/mcpHarness.js';

// Each finding of the fuzzing in issue 13 answered 500 (or, for keep-alive, nothing at all).

const JWT_SECRET = 'a-test-signing-secret-that-is-long-enough';
const BODY_LIMIT = 64 * 1024;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

/** One request over node:http, its body sent exactly as given. */
function send(baseUrl: string, method: string, path: string, body: Buffer | string | undefined, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${baseUrl}${path}`, { method, headers: { authorization: `Bearer ${TEST_KEY}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `{"a":` × depth around `inner`: built as text, since JSON.stringify itself overflows long before 10,000. */
function nested(depth: number, inner = '{}'): string {
  return '{"a":'.repeat(depth) + inner + '}'.repeat(depth);
}

function expectEnvelope(res: Answer, status: number, code: string): void {
  expect(res.status, res.text.slice(0, 300)).to.equal(status);
  expect(res.headers['content-type']).to.match(/^application\/json/);
  expect(res.body).to.have.all.keys('success', 'error');
  expect(res.body.success).to.equal(false);
  expect(res.body.error.code).to.equal(code);
  expect(res.body.error.message).to.be.a('string').and.not.equal('Internal error');
}

describe('Bad input gets a 4xx in the envelope, never a 500 (issue 13)', function () {
  this.timeout(60_000);
  let airlock: TestAirlock;
  before(async () => {
    airlock = await startTestAirlock({ env: { AIRLOCK_JWT_SECRET: JWT_SECRET }, config: { server: { bodyLimitBytes: BODY_LIMIT } } });
  });
  after(async () => airlock?.stop());

  const createTask = (body: Buffer | string, headers: Record<string, string> = {}) => send(airlock.url, 'POST', '/api/v1/tasks', body, { 'content-type': 'application/json', ...headers });

  it('answers VALIDATION_ERROR for a body falsely labelled gzip, deflate or br, and still reads ones that are', async () => {
    const plain = JSON.stringify({ message: '/reply decoded' });
    for (const encoding of ['gzip', 'deflate', 'br', 'x-gzip']) {
      const res = await createTask(plain, { 'content-encoding': encoding });
      expectEnvelope(res, 400, 'VALIDATION_ERROR');
      expect(res.body.error.message).to.equal(`The body is not valid ${encoding} data, as its Content-Encoding says it is`);
    }
    const truncated = gzipSync(plain).subarray(0, 12);
    expectEnvelope(await createTask(truncated, { 'content-encoding': 'gzip' }), 400, 'VALIDATION_ERROR');
    const unknown = await createTask(plain, { 'content-encoding': 'gzip, br' });
    expectEnvelope(unknown, 400, 'VALIDATION_ERROR');
    expect(unknown.body.error.message).to.match(/^Unsupported Content-Encoding/);

    for (const [encoding, body] of [['gzip', gzipSync(plain)], ['deflate', deflateSync(plain)], ['br', brotliCompressSync(plain)], ['GZIP', gzipSync(plain)]] as const) {
      const res = await createTask(body, { 'content-encoding': encoding });
      expect(res.status, `${encoding}: ${res.text}`).to.equal(201);
      expect((await waitForStatus(airlock, res.body.data.id, ['completed'])).output.content).to.equal('decoded');
    }
  });

  it(`answers VALIDATION_ERROR for JSON nested 10,000 deep with a "__proto__" key, and takes ${MAX_JSON_DEPTH} levels`, async () => {
    // The key sits at the bottom, so that finding it means walking all the way down.
    const deep = `{"message":"x","extra":${nested(10_000, '{"__proto__":{}}')}}`;
    const res = await createTask(deep);
    expectEnvelope(res, 400, 'VALIDATION_ERROR');
    expect(res.body.error.message).to.equal(`The body nests objects and arrays more than ${MAX_JSON_DEPTH} deep`);
    const arrays = `{"message":"x","extra":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    expectEnvelope(await createTask(arrays), 400, 'VALIDATION_ERROR');
    // At the limit a body is parsed and checked as any other: here, an unknown field.
    const atLimit = await createTask(`{"message":"x","extra":${nested(MAX_JSON_DEPTH - 2)}}`);
    expectEnvelope(atLimit, 400, 'VALIDATION_ERROR');
    expect(atLimit.body.error.details).to.deep.equal([{ path: '/extra', message: 'is not a known field' }]);
    const proto = await createTask(`{"message":"x","extra":${nested(MAX_JSON_DEPTH - 3, '{"__proto__":{}}')}}`);
    expect(proto.body.error.message).to.equal('The body has a "__proto__" key, which is refused');
    expect(airlock.logs.filter((line) => line.includes('unexpected error'))).to.deep.equal([]);
  });

  it('answers INVALID_TOKEN for a correctly signed JWT whose sub (or project) is not a string', async () => {
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setAudience('airlock').setExpirationTime('1h').sign(new TextEncoder().encode(JWT_SECRET));
    for (const claims of [{ sub: { id: 'u1' }, project: 'default' }, { sub: ['u1'], project: 'default' }, { sub: 42, project: 'default' }, { sub: '', project: 'default' }, { sub: 'u1', project: { name: 'default' } }]) {
      const token = await sign(claims);
      for (const [method, body] of [['GET', undefined], ['POST', JSON.stringify({ message: 'hi' })]] as const) {
        const res = await send(airlock.url, method, '/api/v1/tasks', body, { authorization: `Bearer ${token}`, 'content-type': 'application/json' });
        expectEnvelope(res, 401, 'INVALID_TOKEN');
        expect(res.body.error.message, JSON.stringify(claims)).to.equal('The token\'s "project" and "sub" must be non-empty strings');
      }
    }
    const good = await send(airlock.url, 'GET', '/api/v1/tasks', undefined, { authorization: `Bearer ${await sign({ sub: 'u1', project: 'default' })}` });
    expect(good.status, good.text).to.equal(200);
  });

  it('answers NOT_FOUND for a download path over the file-name length limit', async () => {
    const form = new FormData();
    form.set('message', '/reply stored');
    form.append('files', new Blob(['hello']), 'a.txt');
    const created = await airlock.api('/tasks', { method: 'POST', body: form });
    expect(created.status, created.text).to.equal(201);
    const id = created.body.data.id;
    await waitForStatus(airlock, id, ['completed']);
    expect((await airlock.api(`/tasks/${id}/artifacts/download?path=uploads/a.txt`)).text).to.equal('hello');
    // A 300-byte component (NAME_MAX is 255), one under a real folder, and a path past PATH_MAX.
    for (const path of ['a'.repeat(300), `uploads/${'é'.repeat(150)}`, `uploads/${'b/'.repeat(2100)}c`]) {
      const res = await send(airlock.url, 'GET', `/api/v1/tasks/${id}/artifacts/download?path=${encodeURIComponent(path)}`, undefined, {});
      expectEnvelope(res, 404, 'NOT_FOUND');
    }
  });

  it(`lists at most ${MAX_ERROR_DETAILS} details and counts the rest, for a request with 50,000 unknown keys`, async () => {
    const keys: Record<string, unknown> = { message: 'x' };
    for (let i = 0; i < 50_000; i++) keys[`k${i}`] = 1;
    const big = await startTestAirlock();
    try {
      const res = await send(big.url, 'POST', '/api/v1/tasks', JSON.stringify(keys), { 'content-type': 'application/json' });
      expectEnvelope(res, 400, 'VALIDATION_ERROR');
      expect(res.body.error).to.have.all.keys('code', 'message', 'details', 'detailsOmitted');
      expect(res.body.error.details).to.have.length(MAX_ERROR_DETAILS);
      expect(res.body.error.details[0]).to.deep.equal({ path: '/k0', message: 'is not a known field' });
      expect(res.body.error.detailsOmitted).to.equal(50_000 - MAX_ERROR_DETAILS);
      expect(res.text.length).to.be.below(10_000);
      // At the cap nothing is left off, and no count is added.
      const few = await send(big.url, 'POST', '/api/v1/tasks', JSON.stringify({ message: 'x', ...Object.fromEntries(Array.from({ length: MAX_ERROR_DETAILS }, (_, i) => [`k${i}`, 1])) }), { 'content-type': 'application/json' });
      expect(few.body.error).to.have.all.keys('code', 'message', 'details');
      expect(few.body.error.details).to.have.length(MAX_ERROR_DETAILS);
    } finally {
      await big.stop();
    }
  });

  describe('keep-alive after a refused body', () => {
    /** Two requests on one raw socket: the answer to each, as text (empty when none came). */
    async function twoOnOneSocket(first: Buffer, second: Buffer): Promise<[string, string]> {
      const socket = connect(Number(new URL(airlock.url).port), '127.0.0.1');
      await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      let received = '';
      socket.on('data', (chunk) => (received += chunk.toString('latin1')));
      const answer = async (): Promise<string> => {
        // An answer is whole once its Content-Length of body has arrived after the headers.
        const deadline = Date.now() + 3_000;
        while (Date.now() < deadline) {
          const end = received.indexOf('\r\n\r\n');
          const length = /\r\ncontent-length: (\d+)/i.exec(received);
          if (end >= 0 && length && received.length >= end + 4 + Number(length[1])) {
            const whole = received.slice(0, end + 4 + Number(length[1]));
            received = received.slice(whole.length);
            return whole;
          }
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        return '';
      };
      try {
        socket.write(first);
        const one = await answer();
        socket.write(second);
        return [one, await answer()];
      } finally {
        socket.destroy();
      }
    }

    const head = (contentType: string, encoding: string, length: number) =>
      `POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TEST_KEY}\r\nContent-Type: ${contentType}\r\nContent-Encoding: ${encoding}\r\nContent-Length: ${length}\r\n\r\n`;
    const health = Buffer.from('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');

    it('answers the next request on the socket after a 413 on a compressed body', async () => {
      // Random text compresses little: far more of it than the limit is still on its way when the limit is hit.
      const message = randomBytes(BODY_LIMIT * 12).toString('base64');
      for (const [encoding, compressed] of [['gzip', gzipSync(JSON.stringify({ message }))], ['br', brotliCompressSync(JSON.stringify({ message }))]] as const) {
        const [one, two] = await twoOnOneSocket(Buffer.concat([Buffer.from(head('application/json', encoding, compressed.length)), compressed]), health);
        expect(one, encoding).to.match(/^HTTP\/1\.1 413 /);
        expect(one).to.match(/\r\nconnection: keep-alive\r\n/i);
        expect(one).to.include('"PAYLOAD_TOO_LARGE"');
        expect(two, `${encoding}: no answer to the second request on the socket`).to.match(/^HTTP\/1\.1 200 /);
      }
    });

    it('answers the next request after a compressed form or text body, which no route takes', async () => {
      const compressed = gzipSync(`message=${randomBytes(BODY_LIMIT * 12).toString('base64')}`);
      for (const type of ['application/x-www-form-urlencoded', 'text/plain']) {
        const [one, two] = await twoOnOneSocket(Buffer.concat([Buffer.from(head(type, 'gzip', compressed.length)), compressed]), health);
        expect(one, type).to.match(/^HTTP\/1\.1 400 /);
        expect(one).to.include('"VALIDATION_ERROR"');
        expect(two, `${type}: no answer to the second request on the socket`).to.match(/^HTTP\/1\.1 200 /);
      }
    });
  });
});

describe('Edited approval args nested deep (issue 13)', function () {
  this.timeout(60_000);

  it(`answers VALIDATION_ERROR for args nested 5,000 deep, and runs the tool with args ${MAX_JSON_DEPTH - 1} levels deep`, async () => {
    // The echo fixture plus a tool that answers with the arguments it was called with.
    const echo = await startSessionfulHttp({
      factory: () => {
        const server = createEchoServer();
        server.registerTool('args', { description: 'Returns its arguments as JSON.', inputSchema: z.looseObject({}) }, (args) => textResult(JSON.stringify(args)));
        return server;
      },
    });
    const airlock = await startWithServers({ echo: { type: 'http', url: echo.url } }, { project: { builtinTools: false } });
    try {
      const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['echo__args', { first: true }]), autoExecute: false } });
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['awaiting_approval'], 20_000);
      const approve = (args: string) => send(airlock.url, 'POST', `/api/v1/tasks/${id}/tools/toolu_scripted_1/approve`, `{"outcome":"proceed_once","args":${args}}`, { 'content-type': 'application/json' });

      for (const depth of [5_000, MAX_JSON_DEPTH]) {
        const deep = await approve(nested(depth - 1));
        expectEnvelope(deep, 400, 'VALIDATION_ERROR');
        expect(deep.body.error.message).to.equal(`The body nests objects and arrays more than ${MAX_JSON_DEPTH} deep`);
      }
      expect((await airlock.api(`/tasks/${id}/approvals`)).body.data.approvals[0]).to.include({ status: 'pending' });

      // The body is level 1 and args level 2: this is the deepest body taken.
      const deepest = nested(MAX_JSON_DEPTH - 2);
      const ok = await approve(deepest);
      expect(ok.status, ok.text).to.equal(200);
      const done = await waitForStatus(airlock, id, ['completed', 'failed'], 20_000);
      expect(done.status, JSON.stringify(done.error)).to.equal('completed');
      // The output is the gate's note that the args were edited, then the tool's own answer.
      expect(done.output.toolCalls[0].output.split('\n').at(-1)).to.equal(deepest);
      const [entry] = (await airlock.api(`/tasks/${id}/approvals`)).body.data.approvals;
      expect(entry).to.include({ argsEdited: true });
      expect(JSON.stringify(entry.editedArgs)).to.equal(deepest);
      expect(airlock.logs.filter((line) => line.includes('unexpected error'))).to.deep.equal([]);
    } finally {
      await airlock.stop();
      await echo.close();
    }
  });
});
