import { request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { expect } from 'chai';
import { startTestAirlock, TEST_KEY, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';

/**
 * A raw POST over node:http, so that chunking, Content-Length and encodings are the test's to
 * choose. A number among the chunks is a pause in ms, so the server reads the body in pieces that
 * arrive apart.
 */
function post(baseUrl: string, path: string, chunks: (string | Buffer | number)[], headers: Record<string, string>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(`${baseUrl}/api/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    void (async () => {
      for (const chunk of chunks) {
        if (typeof chunk === 'number') await new Promise((r) => setTimeout(r, chunk));
        else req.write(chunk);
      }
      req.end();
    })();
  });
}

describe('JSON request bodies', () => {
  let airlock: TestAirlock;
  before(async () => {
    airlock = await startTestAirlock({ config: { server: { bodyLimitBytes: 4096 } } });
  });
  after(async () => {
    await airlock.stop();
  });

  const create = (chunks: (string | Buffer | number)[], headers: Record<string, string> = {}) => post(airlock.url, '/tasks', chunks, { 'content-type': 'application/json', ...headers });

  it('reads a body that arrives in several chunks (chunked encoding), with a BOM and a charset parameter', async () => {
    const res = await create(['\uFEFF{"mess', 100, 'age":"/reply in ', 50, 'pieces ✓"}'], { 'content-type': 'application/json; charset=utf-8' });
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    const task = await waitForStatus(airlock, res.body.data.id, ['completed']);
    expect(task.output.content).to.equal('in pieces ✓');
  });

  it('accepts +json media types and gzip-compressed bodies', async () => {
    const vendor = await create([JSON.stringify({ message: '/reply vendor' })], { 'content-type': 'application/vnd.airlock+json' });
    expect(vendor.status, JSON.stringify(vendor.body)).to.equal(201);
    const zipped = await create([gzipSync(JSON.stringify({ message: '/reply zipped' }))], { 'content-encoding': 'gzip' });
    expect(zipped.status, JSON.stringify(zipped.body)).to.equal(201);
    expect((await waitForStatus(airlock, zipped.body.data.id, ['completed'])).output.content).to.equal('zipped');
  });

  it('answers VALIDATION_ERROR for JSON that is not an object, and treats an empty body as {}', async () => {
    for (const body of ['"just a string"', '42', 'null', '{"message": "x",}']) {
      const res = await create([body]);
      expect(res.status, body).to.equal(400);
      expect(res.body.error).to.deep.equal({ code: 'VALIDATION_ERROR', message: 'The body is not valid JSON' });
    }
    const array = await create(['["a"]']);
    expect(array.body.error).to.deep.include({ code: 'VALIDATION_ERROR', message: 'The body must be a JSON object' });
    const empty = await create([]);
    expect(empty.status).to.equal(400);
    expect(empty.body.error.details).to.deep.equal([{ path: '/message', message: 'is required' }]);
  });

  it('refuses a "__proto__" key in any spelling, but not the text in a value', async () => {
    for (const body of ['{"message":"x","__proto__":{"admin":true}}', '{"message":"x","env":{"\\u005f_proto__":{"A":"b"}}}']) {
      const res = await create([body]);
      expect(res.status, body).to.equal(400);
      expect(res.body.error).to.deep.equal({ code: 'VALIDATION_ERROR', message: 'The body has a "__proto__" key, which is refused' });
    }
    const res = await create([JSON.stringify({ message: '/reply what is "__proto__"?' })]);
    expect(res.status).to.equal(201);
  });

  it('answers PAYLOAD_TOO_LARGE for a declared length past the limit and for a chunked body that grows past it, and the service goes on', async () => {
    const declared = await create([JSON.stringify({ message: 'x'.repeat(5000) })]);
    expect(declared.status).to.equal(413);
    expect(declared.body.error.code).to.equal('PAYLOAD_TOO_LARGE');
    const chunks = ['{"message":"', 100, ...Array.from({ length: 10 }, () => 'y'.repeat(1000)), '"}'];
    const streamed = await create(chunks);
    expect(streamed.status).to.equal(413);
    expect(streamed.body.error.code).to.equal('PAYLOAD_TOO_LARGE');
    const after = await create([JSON.stringify({ message: '/reply still here' })]);
    expect(after.status).to.equal(201);
    const whole = await create(['{"message":"' + 'z'.repeat(5000) + '"}'], { 'transfer-encoding': 'chunked' });
    expect(whole.status).to.equal(413);
  });

  it('drops a request whose client goes away mid-body, creates nothing, and goes on', async () => {
    const before = (await airlock.api('/tasks?includeHidden=true')).body.pagination.total;
    await new Promise<void>((resolve) => {
      const req = request(`${airlock.url}/api/v1/tasks`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json', 'content-length': '2000' } });
      req.on('error', () => resolve());
      req.write('{"message":"/reply never');
      setTimeout(() => req.destroy(), 100);
    });
    const after = await create([JSON.stringify({ message: '/reply after the abort' })]);
    expect(after.status).to.equal(201);
    await waitForStatus(airlock, after.body.data.id, ['completed']);
    expect((await airlock.api('/tasks?includeHidden=true')).body.pagination.total).to.equal(before + 1);
  });

  it('parses the JSON bodies of approve and follow-up routes the same way', async () => {
    const res = await create([JSON.stringify({ message: '/reply first' })]);
    await waitForStatus(airlock, res.body.data.id, ['completed']);
    const bad = await post(airlock.url, `/tasks/${res.body.data.id}/messages`, ['[1'], { 'content-type': 'application/json' });
    expect(bad.body.error).to.deep.equal({ code: 'VALIDATION_ERROR', message: 'The body is not valid JSON' });
    const good = await post(airlock.url, `/tasks/${res.body.data.id}/messages`, ['{"message":"/reply second"}'], { 'content-type': 'application/json' });
    expect(good.status, JSON.stringify(good.body)).to.equal(200);
    const approve = await post(airlock.url, `/tasks/${res.body.data.id}/tools/toolu_none/approve`, ['{"outcome":'], { 'content-type': 'application/json' });
    expect(approve.body.error).to.deep.equal({ code: 'VALIDATION_ERROR', message: 'The body is not valid JSON' });
  });
});
