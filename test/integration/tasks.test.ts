import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import { hashApiKey } from '../../src/runtime/security/apiKeys.js';
import { startTestAirlock, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { FakeToolRouter, RecordingModel, text } from '../support/fakes.js';

describe('Task routes', () => {
  let airlock: TestAirlock;
  let model: RecordingModel;
  let tools: FakeToolRouter;

  before(async () => {
    model = new RecordingModel();
    tools = new FakeToolRouter({
      lookup: { server: 'kb', handler: (args) => text(`found ${String(args.q)}`) },
    });
    airlock = await startTestAirlock({ overrides: { modelFor: () => model, toolRouter: tools } });
  });
  after(async () => {
    await airlock.stop();
    expect(tools.unexpected).to.deep.equal([]);
  });

  const create = (json: unknown) => airlock.api('/tasks', { method: 'POST', json });

  describe('POST /tasks', () => {
    it('answers 201 with the id and pending status before the model runs', async () => {
      const res = await create({ message: '/delay 200\n/reply later' });
      expect(res.status).to.equal(201);
      expect(res.body.success).to.equal(true);
      expect(res.body.data.status).to.equal('pending');
      expect(res.body.data.id).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const task = await waitForStatus(airlock, res.body.data.id, ['completed']);
      expect(task.output.content).to.equal('later');
    });

    it('keeps the sessionId a task was created with through its run, with and without secrets', async () => {
      const local = await startTestAirlock({ env: { AIRLOCK_CONCURRENCY: '1' } });
      try {
        const blocker = (await local.api('/tasks', { method: 'POST', json: { message: '/delay 60000' } })).body.data.id;
        const plain = (await local.api('/tasks', { method: 'POST', json: { message: '/reply plain' } })).body.data.id;
        const secret = (await local.api('/tasks', { method: 'POST', json: { message: '/reply with a secret', secrets: { TOKEN: 'queued-secret-value' } } })).body.data.id;
        const queued = await Promise.all([plain, secret].map(async (id) => (await local.api(`/tasks/${id}`)).body.data));
        expect(queued.map((t) => t.status)).to.deep.equal(['pending', 'pending']);
        await local.api(`/tasks/${blocker}`, { method: 'DELETE' });
        const done = await Promise.all([plain, secret].map((id) => waitForStatus(local, id, ['completed'])));
        expect(done.map((t) => t.sessionId)).to.deep.equal(queued.map((t) => t.sessionId));
        expect(done.map((t) => t.output.content)).to.deep.equal(['plain', 'with a secret']);
      } finally {
        await local.stop();
      }
    });

    it('validates fields with details and loses nothing', async () => {
      const res = await create({ message: '', autoExecute: 'yes', extra: 1 });
      expect(res.status).to.equal(400);
      expect(res.body.error.code).to.equal('VALIDATION_ERROR');
      const paths = res.body.error.details.map((d: { path: string }) => d.path);
      expect(paths).to.include.members(['/message', '/autoExecute', '/extra']);
      expect((await create({})).body.error.details).to.deep.equal([{ path: '/message', message: 'is required' }]);
    });

    // The seed API answers VALIDATION_ERROR for a bad env/secrets key on create and follow-up;
    // INVALID_ENV is its code for POST /auth/token only.
    it('answers VALIDATION_ERROR for bad env/secrets keys or non-string values on create and follow-up, naming keys and never values', async () => {
      const res = await create({ message: 'x', env: { '1BAD': 'v' }, secrets: { GOOD: 42, 'with-dash': 'hunter2-secret' } });
      expect(res.status).to.equal(400);
      expect(res.body.error.code).to.equal('VALIDATION_ERROR');
      expect(res.body.error.details.map((d: { path: string }) => d.path)).to.have.members(['/env/1BAD', '/secrets/GOOD', '/secrets/with-dash']);
      expect(res.text).not.to.include('hunter2-secret');
      const id = (await create({ message: '/reply first' })).body.data.id;
      await waitForStatus(airlock, id, ['completed']);
      const followUp = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: 'more', secrets: { 'bad key': 'hunter3-secret' } } });
      expect(followUp.status).to.equal(400);
      expect(followUp.body.error.code).to.equal('VALIDATION_ERROR');
      expect(followUp.body.error.details).to.deep.equal([{ path: '/secrets/bad key', message: 'key must match ^[A-Za-z_][A-Za-z0-9_]*$' }]);
      expect(followUp.text).not.to.include('hunter3-secret');
    });

    it('answers VALIDATION_ERROR for malformed JSON and other content types, PAYLOAD_TOO_LARGE past the limit', async () => {
      const bad = await airlock.api('/tasks', { method: 'POST', body: '{"message":', headers: { 'content-type': 'application/json' } });
      expect(bad.status).to.equal(400);
      expect(bad.body.error.code).to.equal('VALIDATION_ERROR');
      const plain = await airlock.api('/tasks', { method: 'POST', body: 'message=hi', headers: { 'content-type': 'text/plain' } });
      expect(plain.body.error.code).to.equal('VALIDATION_ERROR');
      const big = await create({ message: 'x'.repeat(1024 * 1024 + 10) });
      expect(big.status).to.equal(413);
      expect(big.body.error.code).to.equal('PAYLOAD_TOO_LARGE');
    });

    it('accepts multipart fields without files, with string booleans', async () => {
      const form = new FormData();
      form.set('message', '/reply from a form');
      form.set('showInHistory', 'False');
      form.set('autoExecute', '0');
      const res = await airlock.api('/tasks', { method: 'POST', body: form });
      expect(res.status).to.equal(201);
      const task = await waitForStatus(airlock, res.body.data.id, ['completed']);
      expect(task).to.include({ showInHistory: false, autoExecute: false });
      expect(task.output.content).to.equal('from a form');
    });

    it('answers VALIDATION_ERROR for a malformed multipart body and PAYLOAD_TOO_LARGE for an oversize field', async () => {
      const garbage = await airlock.api('/tasks', { method: 'POST', body: 'not multipart at all', headers: { 'content-type': 'multipart/form-data' } });
      expect(garbage.status).to.equal(400);
      expect(garbage.body.error.code).to.equal('VALIDATION_ERROR');
      const form = new FormData();
      form.set('message', 'x'.repeat(1024 * 1024 + 10));
      const big = await airlock.api('/tasks', { method: 'POST', body: form });
      expect(big.status).to.equal(413);
      expect(big.body.error.code).to.equal('PAYLOAD_TOO_LARGE');
      const empty = await airlock.api('/tasks', { method: 'POST', headers: { 'content-type': 'application/json' } });
      expect(empty.body.error).to.deep.include({ code: 'VALIDATION_ERROR', message: 'Invalid request body: /message is required' });
    });

    it('refuses env or secrets in multipart', async () => {
      const form = new FormData();
      form.set('message', 'x');
      form.set('secrets', '{"A":"b"}');
      const res = await airlock.api('/tasks', { method: 'POST', body: form });
      expect(res.body.error).to.deep.include({ code: 'VALIDATION_ERROR', message: 'Send env and secrets as application/json' });
    });
  });

  describe('GET /tasks/:id', () => {
    it('shows the task fields, output with tool calls, and never secrets', async () => {
      const res = await create({ message: '/call lookup {"q":"otters"}\n/reply done', systemPrompt: 'Be brief.', env: { REGION: 'eu' }, secrets: { TOKEN: 'tok-123456' } });
      const task = await waitForStatus(airlock, res.body.data.id, ['completed']);
      expect(task).to.include({ projectId: 'default', status: 'completed', systemPrompt: 'Be brief.', showInHistory: true, autoExecute: true, endUserId: null });
      expect(task.apiKeyId).to.be.a('string');
      expect(task.env).to.deep.equal({ REGION: 'eu' });
      expect(task).to.have.keys('id', 'projectId', 'apiKeyId', 'endUserId', 'username', 'sessionId', 'conversationId', 'status', 'message', 'systemPrompt', 'showInHistory', 'autoExecute', 'env', 'error', 'errorCode', 'usage', 'createdAt', 'startedAt', 'completedAt', 'lastActivityAt', 'messageCount', 'output', 'workspaceBytes');
      expect(task.output.content).to.equal('done');
      expect(task.output.toolCalls).to.deep.equal([{ callId: 'toolu_scripted_1', toolName: 'lookup', server: 'kb', status: 'success', args: { q: 'otters' }, output: 'found otters' }]);
      expect(task.usage.turns).to.equal(2);
      expect(JSON.stringify(task)).not.to.include('tok-123456');
      for (const stamp of [task.createdAt, task.startedAt, task.completedAt]) expect(stamp).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });

    it('answers NOT_FOUND for unknown and malformed ids', async () => {
      for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
        const res = await airlock.api(`/tasks/${id}`);
        expect(res.status).to.equal(404);
        expect(res.body.error.code).to.equal('NOT_FOUND');
      }
    });
  });

  describe('GET /tasks', () => {
    it('lists newest activity first with pagination, hides showInHistory false unless includeHidden, filters by status', async () => {
      const fresh = await startTestAirlock();
      try {
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          const res = await fresh.api('/tasks', { method: 'POST', json: { message: `/reply ${i}`, showInHistory: i !== 2 } });
          ids.push(res.body.data.id);
          await waitForStatus(fresh, res.body.data.id, ['completed']);
        }
        const page = await fresh.api('/tasks?limit=2&offset=1');
        expect(page.body.pagination).to.include({ total: 4, limit: 2, offset: 1, hasMore: true });
        expect(page.body.pagination.nextCursor).to.be.a('string');
        expect(page.body.data.map((t: { id: string }) => t.id)).to.deep.equal([ids[3], ids[1]]);
        expect(page.body.data[0]).to.include.keys('lastActivityAt', 'messageCount');
        expect(page.body.data[0].messageCount).to.equal(2);
        const all = await fresh.api('/tasks?includeHidden=true');
        expect(all.body.data.map((t: { id: string }) => t.id)).to.deep.equal([...ids].reverse());
        expect(all.body.pagination.hasMore).to.equal(false);
        expect((await fresh.api('/tasks?status=running')).body.data).to.deep.equal([]);
        expect((await fresh.api('/tasks?status=completed')).body.pagination.total).to.equal(4);
        for (const query of ['limit=0', 'limit=101', 'offset=-1', 'limit=abc', 'status=done', 'includeHidden=maybe', 'bogus=1']) {
          const res = await fresh.api(`/tasks?${query}`);
          expect(res.status, query).to.equal(400);
          expect(res.body.error.code, query).to.equal('VALIDATION_ERROR');
        }
      } finally {
        await fresh.stop();
      }
    });
  });

  describe('POST /tasks/:id/messages', () => {
    it('continues the conversation: the model sees every earlier turn', async () => {
      const res = await create({ message: '/call lookup {"q":"first"}\n/reply one' });
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['completed']);
      const before = model.requests.length;
      const follow = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: '/reply two' } });
      expect(follow.status).to.equal(200);
      expect(follow.body.data).to.deep.equal({ status: 'running' });
      const task = await waitForStatus(airlock, id, ['completed']);
      expect(task.output.content).to.equal('two');
      // History counts one assistant message per run; the model still saw each turn.
      expect(task.messageCount).to.equal(4);
      const seen = model.requests.slice(before).at(-1)!.messages;
      expect(seen.map((m) => m.role)).to.deep.equal(['user', 'assistant', 'user', 'assistant', 'user']);
      expect(seen[1]!.content).to.deep.include({ type: 'tool_use', id: 'toolu_scripted_1', name: 'lookup', input: { q: 'first' } });
      expect(seen[2]!.content[0]).to.deep.include({ type: 'tool_result', toolUseId: 'toolu_scripted_1', isError: false });
      expect(seen[4]!.content).to.deep.equal([{ type: 'text', text: '/reply two' }]);
    });

    it('answers CONFLICT while the task runs, and VALIDATION_ERROR for a bad body', async () => {
      const res = await create({ message: '/delay 300\n/reply slow' });
      const id = res.body.data.id;
      const busy = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: 'more' } });
      expect(busy.status).to.equal(409);
      expect(busy.body.error.code).to.equal('CONFLICT');
      const bad = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { text: 'wrong field' } });
      expect(bad.body.error.code).to.equal('VALIDATION_ERROR');
      await waitForStatus(airlock, id, ['completed']);
    });

    it('merges follow-up env into the stored env', async () => {
      const res = await create({ message: '/reply a', env: { A: '1' } });
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['completed']);
      await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: '/reply b', env: { B: '2' } } });
      const task = await waitForStatus(airlock, id, ['completed']);
      expect(task.env).to.deep.equal({ A: '1', B: '2' });
    });
  });

  describe('DELETE /tasks/:id', () => {
    it('cancels a running task: stops the model call, ends open streams with CANCELLED', async () => {
      const res = await create({ message: '/delay 60000\n/reply never' });
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['running']);
      const started = Date.now();
      const cancel = await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
      expect(cancel.status).to.equal(200);
      expect(cancel.body.data).to.deep.equal({ message: 'Task cancelled' });
      expect(Date.now() - started).to.be.below(3_000);
      const task = (await airlock.api(`/tasks/${id}`)).body.data;
      expect(task.status).to.equal('cancelled');
      const again = await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
      expect(again.status).to.equal(200);
      expect(again.body.data).to.deep.equal({ message: 'Task cancelled' });
    });

    it('cancels a tool call in flight through its AbortSignal', async () => {
      let aborted = false;
      const slowTools = new FakeToolRouter({
        wait: { handler: (_args, { signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => { aborted = true; reject(signal.reason); })) },
      });
      const local = await startTestAirlock({ overrides: { toolRouter: slowTools } });
      try {
        const res = await local.api('/tasks', { method: 'POST', json: { message: '/call wait {}' } });
        const id = res.body.data.id;
        await waitFor(() => slowTools.calls.length > 0, 'the tool call');
        await local.api(`/tasks/${id}`, { method: 'DELETE' });
        expect(aborted).to.equal(true);
        const task = (await local.api(`/tasks/${id}`)).body.data;
        expect(task.status).to.equal('cancelled');
        expect(task.output.toolCalls[0].status).to.equal('cancelled');
      } finally {
        await local.stop();
      }
    });

    it('cancels a task still waiting in the queue', async () => {
      const local = await startTestAirlock({ env: { AIRLOCK_CONCURRENCY: '1' } });
      try {
        const first = (await local.api('/tasks', { method: 'POST', json: { message: '/delay 60000' } })).body.data.id;
        const second = (await local.api('/tasks', { method: 'POST', json: { message: '/reply queued' } })).body.data.id;
        await waitForStatus(local, first, ['running']);
        expect((await local.api(`/tasks/${second}`)).body.data.status).to.equal('pending');
        expect((await local.api(`/tasks/${second}`, { method: 'DELETE' })).status).to.equal(200);
        expect((await local.api(`/tasks/${second}`)).body.data.status).to.equal('cancelled');
        await local.api(`/tasks/${first}`, { method: 'DELETE' });
      } finally {
        await local.stop();
      }
    });

    it('fails every task still waiting in the queue at a shutdown, each with its status and error events', async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'airlock-test-'));
      try {
        const local = await startTestAirlock({ dataDir, env: { AIRLOCK_CONCURRENCY: '1' }, config: { server: { shutdownGraceMs: 100 } } });
        const first = (await local.api('/tasks', { method: 'POST', json: { message: '/delay 60000' } })).body.data.id;
        const queued = await Promise.all([1, 2, 3].map(async (n) => (await local.api('/tasks', { method: 'POST', json: { message: `/reply queued ${n}` } })).body.data.id as string));
        await waitForStatus(local, first, ['running']);
        await local.stop();
        const store = new SqliteStore(join(dataDir, 'airlock.db'));
        try {
          for (const id of queued) {
            const task = (await store.getTask(id))!;
            expect(task.status).to.equal('failed');
            expect(task.error!.message).to.match(/shut down before this task started/);
            const events = await store.listEvents(id, 0, 100);
            expect(events.map((e) => [e.type, e.data.status ?? e.data.code])).to.deep.equal([['status', 'failed'], ['error', 'EXECUTION_ERROR']]);
          }
        } finally {
          await store.close();
        }
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    });

    it('answers CONFLICT for a finished task', async () => {
      const res = await create({ message: '/reply done' });
      await waitForStatus(airlock, res.body.data.id, ['completed']);
      const cancel = await airlock.api(`/tasks/${res.body.data.id}`, { method: 'DELETE' });
      expect(cancel.status).to.equal(409);
      expect(cancel.body.error.code).to.equal('CONFLICT');
    });
  });

  describe('GET /tasks/:id/history', () => {
    it('returns every message with thoughts and tool calls, one assistant message per run', async () => {
      const res = await create({ message: '/think weighing it\n/call lookup {"q":"x"}\n/reply ok' });
      const id = res.body.data.id;
      await waitForStatus(airlock, id, ['completed']);
      const history = (await airlock.api(`/tasks/${id}/history`)).body.data;
      expect(history).to.include({ taskId: id, status: 'completed' });
      expect(history.conversationId).to.be.a('string');
      const [user, answer] = history.messages;
      expect(user).to.include({ role: 'user', content: '/think weighing it\n/call lookup {"q":"x"}\n/reply ok' });
      expect(answer).to.include({ role: 'assistant', content: 'ok' });
      expect(answer.thoughts).to.deep.equal([{ subject: 'Thinking', description: 'weighing it' }]);
      expect(answer.toolCalls).to.have.length(1);
      expect(answer.toolCalls[0]).to.include({ toolName: 'lookup', status: 'success', output: 'found x' });
      expect(history.messages).to.have.length(2);
    });
  });

  describe('failures', () => {
    // The hosted API's task has `error: string | null`; Airlock keeps the code beside it in `errorCode`.
    it('fails the task with EXECUTION_ERROR when the model provider fails (error a string, the code in errorCode), and the process goes on', async () => {
      const res = await create({ message: '/fail the provider is down' });
      const id = res.body.data.id;
      const task = await waitForStatus(airlock, id, ['failed']);
      expect(task).to.include({ error: 'Scripted model failure: the provider is down', errorCode: 'EXECUTION_ERROR' });
      const listed = (await airlock.api('/tasks?status=failed&limit=100')).body.data.find((t: { id: string }) => t.id === id);
      expect(listed).to.include({ error: 'Scripted model failure: the provider is down', errorCode: 'EXECUTION_ERROR' });
      await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: '/reply recovered' } });
      expect(await waitForStatus(airlock, id, ['completed'])).to.include({ error: null, errorCode: null });
      expect((await create({ message: '/reply still here' })).status).to.equal(201);
    });

    it('gives a tool that throws to the model as an error result', async () => {
      const local = await startTestAirlock({ overrides: { toolRouter: new FakeToolRouter({ boom: { handler: () => { throw new Error('kaput'); } } }) } });
      try {
        const res = await local.api('/tasks', { method: 'POST', json: { message: '/call boom {}' } });
        const task = await waitForStatus(local, res.body.data.id, ['completed']);
        expect(task.output.toolCalls[0]).to.include({ status: 'error', output: 'Tool failed: kaput' });
        expect(task.output.content).to.equal('- boom: Tool failed: kaput');
      } finally {
        await local.stop();
      }
    });
  });

  it('answers /healthz without auth', async () => {
    const res = await airlock.api('/healthz', { key: null });
    expect(res.status).to.equal(200);
    expect(res.body.data.status).to.equal('ok');
  });

  it('answers unknown routes with NOT_FOUND in the envelope and a request id', async () => {
    const res = await airlock.api('/nothing-here');
    expect(res.status).to.equal(404);
    expect(res.body).to.deep.equal({ success: false, error: { code: 'NOT_FOUND', message: 'No route for GET /api/v1/nothing-here' } });
    expect(res.headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
  });

  it('logs one line per request with its id, key and project, and the path without the query', async () => {
    const res = await airlock.api('/tasks?limit=3', { headers: { 'x-request-id': 'trace-42' } });
    expect(res.headers.get('x-request-id')).to.equal('trace-42');
    const line = await waitFor(() => airlock.logs.map((text) => JSON.parse(text)).find((entry) => entry.msg === 'request' && entry.requestId === 'trace-42'), 'the request line');
    const keyId = (await airlock.store.findApiKeyByHash(hashApiKey(airlock.key)))!.id;
    expect(line).to.include({ level: 30, requestId: 'trace-42', apiKeyId: keyId, projectId: 'default', method: 'GET', path: '/api/v1/tasks', status: 200 });
    expect(line.ms).to.be.a('number');
    expect(JSON.stringify(line)).not.to.include(airlock.key);
  });

  it('scrubs the operator\'s secrets out of the request line, and leaves a task\'s secrets out of lines that are not the task\'s', async () => {
    const secret = 'request-line-canary-7f3a';
    const created = await airlock.api('/tasks', { method: 'POST', json: { message: '/delay 60000', secrets: { TOKEN: secret } } });
    expect(created.status).to.equal(201);
    // The bootstrap key is the config's: scrubbed from every line, whatever logged it.
    await airlock.api('/tasks?limit=1', { headers: { 'x-request-id': airlock.key } });
    await airlock.api('/tasks?limit=2', { headers: { 'x-request-id': secret } });
    const requests = () => airlock.logs.map((text) => JSON.parse(text)).filter((entry) => entry.msg === 'request' && entry.path === '/api/v1/tasks' && entry.method === 'GET');
    await waitFor(() => requests().length >= 2, 'both request lines');
    expect(requests().map((entry) => entry.requestId)).to.include.members(['[secret:AIRLOCK_BOOTSTRAP_API_KEY]', secret]);
    expect(airlock.logs.join('\n')).not.to.include(airlock.key);
    await airlock.api(`/tasks/${created.body.data.id}`, { method: 'DELETE' });
  });
});
