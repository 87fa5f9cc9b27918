import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { ServiceError } from '../../src/errors.js';
import { InputRequests } from '../../src/runtime/approvals/inputRequests.js';
import type { InputAnswer, InputPrompt } from '../../src/runtime/approvals/inputRequests.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import type { EventRecord, TaskRecord } from '../../src/store/store.js';

const FORM: InputPrompt = {
  mode: 'form',
  message: 'Who are you?',
  schema: {
    type: 'object',
    properties: { name: { type: 'string', minLength: 1 }, email: { type: 'string', format: 'email' }, age: { type: 'integer', minimum: 0, default: 30 } },
    required: ['name'],
  },
};

async function rejection(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(ServiceError);
    return err as ServiceError;
  }
  throw new Error('expected a rejection');
}

describe('InputRequests', () => {
  let store: SqliteStore;
  let inputs: InputRequests;
  let taskId: string;

  beforeEach(async () => {
    store = new SqliteStore(':memory:');
    inputs = new InputRequests(store);
    taskId = randomUUID();
    const now = new Date().toISOString();
    const task: TaskRecord = {
      id: taskId, projectId: 'default', apiKeyId: null, endUserId: null, username: null, sessionId: randomUUID(), conversationId: randomUUID(),
      status: 'running', message: 'm', systemPrompt: null, showInHistory: true, autoExecute: true, env: null, error: null,
      usage: { inputTokens: 0, outputTokens: 0, turns: 0 }, createdAt: now, startedAt: now, completedAt: null, lastActivityAt: now, messageCount: 0, runStartSeq: 0, secretKeys: [],
    };
    await store.createTask(task);
  });

  afterEach(async () => {
    await store.close();
  });

  const emit = (type: string, data: Record<string, unknown>) => store.appendEvent(taskId, type, data);
  const stored = async (): Promise<EventRecord[]> => store.listEvents(taskId, 0, 1_000);

  /** Opens a request and waits until it is announced; returns its id and the answer to come. */
  async function open(prompt: InputPrompt = FORM, options: { signal?: AbortSignal; timeoutMs?: number; callId?: string } = {}): Promise<{ requestId: string; answer: Promise<InputAnswer> }> {
    const before = (await stored()).length;
    const answer = inputs.open({ taskId, server: 'crm', prompt, emit, signal: options.signal ?? new AbortController().signal, ...(options.callId ? { callId: options.callId } : {}), ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) });
    for (;;) {
      const announced = (await stored()).slice(before).find((e) => e.type === 'input_required');
      if (announced) return { requestId: String(announced.data.requestId), answer };
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  it('announces the request, then takes a valid answer once: the server gets the content with defaults filled in', async () => {
    const { requestId, answer } = await open(FORM, { callId: 'call-1' });
    expect(requestId).to.match(/^inp_[0-9a-f]{32}$/);
    const [announced] = await stored();
    expect(announced!.data).to.deep.equal({ requestId, server: 'crm', callId: 'call-1', ...FORM });

    const content = { name: 'Ada', email: 'ada@example.com' };
    expect(await inputs.answer(taskId, requestId, { action: 'accept', content }, 'key:k1')).to.deep.equal({ requestId, action: 'accept' });
    expect(await answer).to.deep.equal({ action: 'accept', content: { name: 'Ada', email: 'ada@example.com', age: 30 } });
    expect(content, 'the caller\'s object is not changed').to.deep.equal({ name: 'Ada', email: 'ada@example.com' });
    const resolved = (await stored()).filter((e) => e.type === 'input_resolved').map((e) => e.data);
    expect(resolved).to.deep.equal([{ requestId, action: 'accept', content: { name: 'Ada', email: 'ada@example.com', age: 30 }, answeredBy: 'key:k1' }]);

    const again = await rejection(inputs.answer(taskId, requestId, { action: 'decline' }, 'key:k1'));
    expect([again.code, again.message]).to.deep.equal(['CONFLICT', 'The input request was already answered (accept)']);
  });

  it('refuses content the schema rejects, with one detail per problem, and keeps the request pending', async () => {
    const { requestId, answer } = await open();
    const bad = await rejection(inputs.answer(taskId, requestId, { action: 'accept', content: { email: 'nope', age: -1 } }, 'key:k1'));
    expect(bad.code).to.equal('VALIDATION_ERROR');
    expect(bad.details).to.deep.equal([
      { path: '/content', message: "must have required property 'name'" },
      { path: '/content/email', message: 'must match format "email"' },
      { path: '/content/age', message: 'must be >= 0' },
    ]);
    const empty = await rejection(inputs.answer(taskId, requestId, { action: 'accept' }, 'key:k1'));
    expect(empty.details).to.deep.equal([{ path: '/content', message: "must have required property 'name'" }]);
    expect((await stored()).map((e) => e.type)).to.deep.equal(['input_required']);

    await inputs.answer(taskId, requestId, { action: 'decline', content: { anything: true } }, 'user:u1');
    expect(await answer).to.deep.equal({ action: 'decline' });
  });

  it('checks 2020-12 schemas with the 2020-12 dialect', async () => {
    const schema = { $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object', properties: { tags: { type: 'array', prefixItems: [{ type: 'string' }], items: false } } };
    const { requestId, answer } = await open({ mode: 'form', message: 'Tags?', schema });
    const bad = await rejection(inputs.answer(taskId, requestId, { action: 'accept', content: { tags: ['a', 'b'] } }, 'key:k1'));
    expect(bad.details).to.deep.equal([{ path: '/content/tags', message: 'must NOT have more than 1 items' }]);
    await inputs.answer(taskId, requestId, { action: 'accept', content: { tags: ['a'] } }, 'key:k1');
    expect(await answer).to.deep.equal({ action: 'accept', content: { tags: ['a'] } });
  });

  it('refuses to accept against a schema that cannot be compiled, and still takes decline', async () => {
    const { requestId, answer } = await open({ mode: 'form', message: 'x', schema: { type: 'object', properties: { a: { type: 'no-such-type' } } } });
    const bad = await rejection(inputs.answer(taskId, requestId, { action: 'accept', content: { a: 1 } }, 'key:k1'));
    expect(bad.code).to.equal('VALIDATION_ERROR');
    expect(bad.message).to.match(/^The server's schema cannot be used to check the content .*; answer decline or cancel$/);
    await inputs.answer(taskId, requestId, { action: 'decline' }, 'key:k1');
    expect((await answer).action).to.equal('decline');
  });

  it('URL mode: accept passes no content', async () => {
    const { requestId, answer } = await open({ mode: 'url', message: 'Sign in', url: 'https://example.com/consent', elicitationId: 'e1' });
    expect((await stored())[0]!.data).to.deep.include({ mode: 'url', url: 'https://example.com/consent', elicitationId: 'e1' });
    await inputs.answer(taskId, requestId, { action: 'accept', content: { ignored: true } }, 'key:k1');
    expect(await answer).to.deep.equal({ action: 'accept' });
  });

  it('of concurrent answers, exactly one is taken', async () => {
    const { requestId, answer } = await open();
    const results = await Promise.allSettled([
      inputs.answer(taskId, requestId, { action: 'accept', content: { name: 'A' } }, 'key:k1'),
      inputs.answer(taskId, requestId, { action: 'decline' }, 'key:k2'),
      inputs.answer(taskId, requestId, { action: 'cancel' }, 'key:k3'),
    ]);
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'rejected']);
    for (const r of results.slice(1)) expect(((r as PromiseRejectedResult).reason as ServiceError).code).to.equal('CONFLICT');
    expect((await answer).action).to.equal('accept');
    expect((await stored()).filter((e) => e.type === 'input_resolved')).to.have.length(1);
  });

  it('answers cancel, with the reason, when its signal aborts', async () => {
    const controller = new AbortController();
    const { requestId, answer } = await open(FORM, { signal: controller.signal });
    controller.abort(new Error('Task cancelled'));
    expect(await answer).to.deep.equal({ action: 'cancel' });
    expect((await stored()).at(-1)!.data).to.deep.equal({ requestId, action: 'cancel', reason: 'Task cancelled', answeredBy: 'system' });
    const late = await rejection(inputs.answer(taskId, requestId, { action: 'accept', content: { name: 'A' } }, 'key:k1'));
    expect([late.code, late.message]).to.deep.equal(['CONFLICT', 'The input request was already answered (cancel)']);
  });

  it('with a signal already aborted, is announced and cancelled at once, in that order', async () => {
    const controller = new AbortController();
    controller.abort(new Error('the tool call ended'));
    const answer = inputs.open({ taskId, server: 'crm', prompt: FORM, emit, signal: controller.signal });
    expect(await answer).to.deep.equal({ action: 'cancel' });
    expect((await stored()).map((e) => [e.type, e.data.reason])).to.deep.equal([['input_required', undefined], ['input_resolved', 'the tool call ended']]);
  });

  it('expires as cancel with reason "expired", and says when in the announcement', async () => {
    const { requestId, answer } = await open(FORM, { timeoutMs: 20 });
    expect(Date.parse(String((await stored())[0]!.data.expiresAt))).to.be.a('number').and.not.NaN;
    expect(await answer).to.deep.equal({ action: 'cancel' });
    expect((await stored()).at(-1)!.data).to.deep.equal({ requestId, action: 'cancel', reason: 'expired', answeredBy: 'system' });
  });

  it('tells an unknown id (NOT_FOUND) from one no process waits on any more (CONFLICT), from the events', async () => {
    const { requestId } = await open();
    const restarted = new InputRequests(store);
    const orphan = await rejection(restarted.answer(taskId, requestId, { action: 'decline' }, 'key:k1'));
    expect([orphan.code, orphan.message]).to.deep.equal(['CONFLICT', 'The input request is no longer waiting: its task is not running']);
    const unknown = await rejection(inputs.answer(taskId, 'inp_nope', { action: 'decline' }, 'key:k1'));
    expect([unknown.code, unknown.message]).to.deep.equal(['NOT_FOUND', 'No input request with that id in this task']);
    const otherTask = await rejection(inputs.answer(randomUUID(), requestId, { action: 'decline' }, 'key:k1'));
    expect(otherTask.code).to.equal('NOT_FOUND');
  });
});
