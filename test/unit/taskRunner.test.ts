import { ApprovalGate } from '../../src/runtime/approvals/approvalGate.js';
import { InputRequests } from '../../src/runtime/approvals/inputRequests.js';
import { tmpdir } from 'node:os';
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { ModelError } from '../../src/model/modelClient.js';
import type { ContentBlock, ModelClient, ModelRequest, ModelStreamEvent, Usage } from '../../src/model/modelClient.js';
import { EventLog, InProcessEventBus } from '../../src/runtime/events/events.js';
import { SessionRegistry } from '../../src/runtime/runs/sessions.js';
import type { TaskSession } from '../../src/runtime/runs/sessions.js';
import { RunAbort } from '../../src/runtime/approvals/runAbort.js';
import { TaskRunner } from '../../src/runtime/runs/taskRunner.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import type { EventRecord, TaskRecord } from '../../src/store/store.js';
import { FakeToolRouter, ManualModel, text } from '../support/fakes.js';
import type { FakeToolHandler } from '../support/fakes.js';

type Turn = ModelStreamEvent[] | Error;

/**
 * A model that plays prepared turns in order and records each request (a copy: the runner keeps
 * mutating its conversation). A turn beyond the prepared ones fails the run loudly.
 */
class PreparedModel implements ModelClient {
  readonly description = 'prepared';
  readonly requests: ModelRequest[] = [];

  constructor(private readonly turns: Turn[]) {}

  async *stream(request: ModelRequest): AsyncGenerator<ModelStreamEvent> {
    this.requests.push({ ...request, messages: structuredClone(request.messages) });
    const turn = this.turns[this.requests.length - 1];
    if (!turn) throw new Error(`PreparedModel: unexpected model turn ${this.requests.length}`);
    if (turn instanceof Error) throw turn;
    for (const event of turn) yield event;
  }
}

const usage = (inputTokens = 1, outputTokens = 1): Usage => ({ inputTokens, outputTokens });
const toolUse = (id: string, name: string, input: Record<string, unknown> = {}): ContentBlock => ({ type: 'tool_use', id, name, input });

function toolTurn(calls: ContentBlock[], options: { text?: string; usage?: Usage } = {}): ModelStreamEvent[] {
  const content: ContentBlock[] = options.text ? [{ type: 'text', text: options.text }, ...calls] : calls;
  return [
    ...(options.text ? [{ type: 'text_delta' as const, text: options.text }] : []),
    { type: 'turn_end', content, stopReason: 'tool_use', usage: options.usage ?? usage() },
  ];
}

function finalTurn(answer: string, turnUsage = usage()): ModelStreamEvent[] {
  return [{ type: 'text_delta', text: answer }, { type: 'turn_end', content: [{ type: 'text', text: answer }], stopReason: 'end_turn', usage: turnUsage }];
}

/** A promise with its resolve function, for a test to wait on something a fake does. */
function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A tool handler that never finishes on its own: it rejects with the abort reason. */
function hangUntilAborted(started: { resolve: () => void }): FakeToolHandler {
  return (_args, context) => new Promise((_resolve, reject) => {
    started.resolve();
    context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true });
  });
}

describe('TaskRunner', () => {
  let store: SqliteStore;
  let bus: InProcessEventBus;
  let events: EventLog;
  let sessions: SessionRegistry;

  beforeEach(() => {
    store = new SqliteStore(':memory:');
    bus = new InProcessEventBus();
    events = new EventLog(store, bus);
    sessions = new SessionRegistry(pino({ level: 'silent' }), 60_000);
  });

  afterEach(async () => {
    await sessions.closeAll();
    await store.close();
  });

  function runnerWith(model: ModelClient, tools: FakeToolRouter, maxTurns = 10): TaskRunner {
    return new TaskRunner({
      store, events, tools, modelFor: () => model, systemPromptFor: () => 'You are a test.', workspaceFor: async () => tmpdir(), workspaceDirOf: () => tmpdir(), projectFor: () => ({}), gate: new ApprovalGate(store), inputs: new InputRequests(store), maxTurns, logger: pino({ level: 'silent' }),
    });
  }

  /** A pending task with its first user message, as TaskService.create leaves it. */
  async function createTask(message: string, secrets: Record<string, string> = {}): Promise<{ id: string; session: TaskSession }> {
    const id = randomUUID();
    const session = sessions.open(id);
    session.addSecrets(secrets);
    const now = new Date().toISOString();
    const task: TaskRecord = {
      id, projectId: 'default', apiKeyId: 'key-1', endUserId: null, username: null, sessionId: session.sessionId, conversationId: randomUUID(),
      status: 'pending', message: session.scrubber.text(message), systemPrompt: null, showInHistory: true, autoExecute: true,
      env: null, error: null, usage: { inputTokens: 0, outputTokens: 0, turns: 0 }, createdAt: now, startedAt: null,
      completedAt: null, lastActivityAt: now, messageCount: 0, runStartSeq: 0, secretKeys: Object.keys(secrets),
    };
    await store.createTask(task);
    await store.appendMessage({ id: randomUUID(), taskId: id, role: 'user', content: session.scrubber.text(message), createdAt: now });
    session.conversation = [{ role: 'user', content: [{ type: 'text', text: message }] }];
    return { id, session };
  }

  async function run(runner: TaskRunner, message: string, abort = new AbortController()) {
    const { id, session } = await createTask(message);
    await runner.run(id, session, abort.signal);
    return { id, session, task: (await store.getTask(id))!, events: await store.listEvents(id, 0, 10_000) };
  }

  /** Resolves with the first event of the task that matches. */
  function nextEvent(taskId: string, match: (event: EventRecord) => boolean): Promise<EventRecord> {
    return new Promise((resolve) => {
      const unsubscribe = bus.subscribe(taskId, (event) => {
        if (!match(event)) return;
        unsubscribe();
        resolve(event);
      });
    });
  }

  const ofType = (list: EventRecord[], type: string) => list.filter((e) => e.type === type).map((e) => e.data);

  describe('#run()', () => {
    it('runs a tool call and gives its result to the model under the call id', async () => {
      const model = new PreparedModel([toolTurn([toolUse('call_1', 'echo', { x: 1 })]), finalTurn('done')]);
      const tools = new FakeToolRouter({ echo: { server: 'util', handler: (args) => text(`echo ${JSON.stringify(args)}`) } });
      const { task, events: list } = await run(runnerWith(model, tools), 'please echo');

      expect(task.status).to.equal('completed');
      expect(tools.calls).to.deep.equal([{ callId: 'call_1', name: 'echo', args: { x: 1 } }]);
      expect(model.requests).to.have.length(2);
      expect(model.requests[1]!.messages.at(-1)).to.deep.equal({
        role: 'user',
        content: [{ type: 'tool_result', toolUseId: 'call_1', content: [{ type: 'text', text: 'echo {"x":1}' }], isError: false }],
      });
      expect(model.requests[1]!.messages.at(-2)).to.deep.equal({ role: 'assistant', content: [toolUse('call_1', 'echo', { x: 1 })] });
      expect(ofType(list, 'tool_call')).to.deep.equal([{ callId: 'call_1', toolName: 'echo', server: 'util', args: { x: 1 }, status: 'executing' }]);
      expect(ofType(list, 'tool_result')).to.deep.equal([{ callId: 'call_1', status: 'success', output: 'echo {"x":1}' }]);
      expect(ofType(list, 'done')).to.deep.equal([{ finalResponse: 'done' }]);
      expect(tools.unexpected).to.deep.equal([]);
    });

    it('runs two calls of one model turn in parallel and returns both results in one user message', async () => {
      const order: string[] = [];
      const bothStarted = signal();
      let started = 0;
      // Each call waits until both have started: run one after the other, they never would.
      const handler: FakeToolHandler = async (args) => {
        order.push(`start ${String(args.n)}`);
        if (++started === 2) bothStarted.resolve();
        await Promise.race([bothStarted.promise, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
        order.push(`end ${String(args.n)}`);
        return text(`result ${String(args.n)}`);
      };
      const model = new PreparedModel([toolTurn([toolUse('c_a', 'work', { n: 1 }), toolUse('c_b', 'work', { n: 2 })]), finalTurn('both done')]);
      const tools = new FakeToolRouter({ work: { handler } });
      const { task, events: list } = await run(runnerWith(model, tools), 'do two things');

      expect(task.status).to.equal('completed');
      expect(order.slice(0, 2)).to.have.members(['start 1', 'start 2']);
      expect(order.slice(2)).to.have.members(['end 1', 'end 2']);
      const last = model.requests[1]!.messages.at(-1)!;
      expect(last.role).to.equal('user');
      expect(last.content).to.deep.equal([
        { type: 'tool_result', toolUseId: 'c_a', content: [{ type: 'text', text: 'result 1' }], isError: false },
        { type: 'tool_result', toolUseId: 'c_b', content: [{ type: 'text', text: 'result 2' }], isError: false },
      ]);
      expect(ofType(list, 'tool_result').map((d) => d.callId)).to.have.members(['c_a', 'c_b']);
    });

    it('turns tool progress into tool_progress events between the call and its result', async () => {
      const model = new PreparedModel([toolTurn([toolUse('c1', 'slow')]), finalTurn('ok')]);
      const tools = new FakeToolRouter({
        slow: {
          handler: (_args, context) => {
            context.onProgress?.({ progress: 1, total: 2, message: 'half way' });
            context.onProgress?.({ progress: 2, total: 2 });
            return text('finished');
          },
        },
      });
      const { events: list } = await run(runnerWith(model, tools), 'go slowly');
      const types = list.map((e) => e.type);
      expect(ofType(list, 'tool_progress')).to.deep.equal([
        { callId: 'c1', progress: 1, total: 2, message: 'half way' },
        { callId: 'c1', progress: 2, total: 2 },
      ]);
      expect(types.indexOf('tool_call')).to.be.lessThan(types.indexOf('tool_progress'));
      expect(types.lastIndexOf('tool_progress')).to.be.lessThan(types.indexOf('tool_result'));
    });

    it('reports an error result of a tool as status error, and the model goes on', async () => {
      const model = new PreparedModel([toolTurn([toolUse('c1', 'broken')]), finalTurn('I could not do it')]);
      const tools = new FakeToolRouter({ broken: { handler: () => ({ content: [{ type: 'text', text: 'disk full' }], isError: true }) } });
      const { task, events: list } = await run(runnerWith(model, tools), 'try');

      expect(task.status).to.equal('completed');
      expect(ofType(list, 'tool_result')).to.deep.equal([{ callId: 'c1', status: 'error', output: 'disk full' }]);
      expect(model.requests[1]!.messages.at(-1)!.content).to.deep.equal([
        { type: 'tool_result', toolUseId: 'c1', content: [{ type: 'text', text: 'disk full' }], isError: true },
      ]);
    });

    it('gives a tool that throws to the model as an error result', async () => {
      const model = new PreparedModel([toolTurn([toolUse('c1', 'throws')]), finalTurn('noted')]);
      const tools = new FakeToolRouter({ throws: { handler: () => { throw new Error('kaput'); } } });
      const { task, events: list } = await run(runnerWith(model, tools), 'try');

      expect(task.status).to.equal('completed');
      expect(ofType(list, 'tool_result')).to.deep.equal([{ callId: 'c1', status: 'error', output: 'Tool failed: kaput' }]);
      const result = model.requests[1]!.messages.at(-1)!.content[0];
      expect(result).to.deep.include({ type: 'tool_result', toolUseId: 'c1', isError: true });
    });

    it('fails the task naming tasks.maxTurns when the model keeps calling tools', async () => {
      const model = new PreparedModel([toolTurn([toolUse('c1', 'loop')]), toolTurn([toolUse('c2', 'loop')])]);
      const tools = new FakeToolRouter({ loop: { handler: () => text('again') } });
      const { task, events: list } = await run(runnerWith(model, tools, 2), 'loop forever');

      expect(model.requests).to.have.length(2);
      expect(task.status).to.equal('failed');
      expect(task.error?.code).to.equal('EXECUTION_ERROR');
      expect(task.error?.message).to.include('tasks.maxTurns');
      expect(list.at(-1)).to.deep.include({ type: 'error', data: task.error });
    });

    it('sums token usage and turns across model turns on the task', async () => {
      const model = new PreparedModel([toolTurn([toolUse('c1', 't')], { usage: usage(100, 10) }), finalTurn('fin', usage(250, 20))]);
      const tools = new FakeToolRouter({ t: { handler: () => text('r') } });
      const { task } = await run(runnerWith(model, tools), 'count');
      expect(task.usage).to.deep.equal({ inputTokens: 350, outputTokens: 30, turns: 2 });
    });

    it('fails the task with EXECUTION_ERROR and an error event when the model throws ModelError', async () => {
      const model = new PreparedModel([new ModelError('Model provider error (overloaded): try later')]);
      const { task, events: list } = await run(runnerWith(model, new FakeToolRouter({})), 'hello');

      expect(task.status).to.equal('failed');
      expect(task.error).to.deep.equal({ code: 'EXECUTION_ERROR', message: 'Model provider error (overloaded): try later' });
      expect(task.completedAt).to.be.a('string');
      expect(list.slice(-2).map((e) => [e.type, e.data])).to.deep.equal([
        ['status', { status: 'failed' }],
        ['error', { code: 'EXECUTION_ERROR', message: 'Model provider error (overloaded): try later' }],
      ]);
    });

    it('cancels on RunAbort("cancel") during a tool call and answers the open call in the conversation', async () => {
      const started = signal();
      const model = new PreparedModel([toolTurn([toolUse('c_open', 'hang')])]);
      const tools = new FakeToolRouter({ hang: { handler: hangUntilAborted(started) } });
      const runner = runnerWith(model, tools);
      const { id, session } = await createTask('start something long');
      const abort = new AbortController();

      const running = runner.run(id, session, abort.signal);
      await started.promise;
      abort.abort(new RunAbort('cancel'));
      await running;

      const task = (await store.getTask(id))!;
      const list = await store.listEvents(id, 0, 1_000);
      expect(task.status).to.equal('cancelled');
      expect(ofType(list, 'tool_result')).to.deep.equal([{ callId: 'c_open', status: 'cancelled', output: 'The call was cancelled.' }]);
      expect(list.slice(-2).map((e) => [e.type, e.data])).to.deep.equal([
        ['status', { status: 'cancelled' }],
        ['error', { code: 'CANCELLED', message: 'Task cancelled' }],
      ]);
      const last = session.conversation!.at(-1)!;
      expect(last.role).to.equal('user');
      expect(last.content).to.have.length(1);
      expect(last.content[0]).to.deep.include({ type: 'tool_result', toolUseId: 'c_open', isError: true });
    });

    it('on cancel during two parallel calls, reports both cancelled before the final error and answers both', async () => {
      const startedA = signal();
      const startedB = signal();
      const model = new PreparedModel([toolTurn([toolUse('c_a', 'hang_a'), toolUse('c_b', 'hang_b')])]);
      const tools = new FakeToolRouter({ hang_a: { handler: hangUntilAborted(startedA) }, hang_b: { handler: hangUntilAborted(startedB) } });
      const { id, session } = await createTask('two long things');
      const abort = new AbortController();

      const running = runnerWith(model, tools).run(id, session, abort.signal);
      await Promise.all([startedA.promise, startedB.promise]);
      abort.abort(new RunAbort('cancel'));
      await running;

      const list = await store.listEvents(id, 0, 1_000);
      expect(list.at(-1)).to.deep.include({ type: 'error', data: { code: 'CANCELLED', message: 'Task cancelled' } });
      const results = list.filter((e) => e.type === 'tool_result');
      expect(results.map((e) => [e.data.callId, e.data.status])).to.have.deep.members([['c_a', 'cancelled'], ['c_b', 'cancelled']]);
      const last = session.conversation!.at(-1)!;
      expect(last.role).to.equal('user');
      expect(last.content.map((b) => (b.type === 'tool_result' ? [b.toolUseId, b.isError] : b.type))).to.deep.equal([['c_a', true], ['c_b', true]]);
    });

    it('fails with a "shut down" message on RunAbort("shutdown") while the model streams', async () => {
      const model = new ManualModel();
      const runner = runnerWith(model, new FakeToolRouter({}));
      const { id, session } = await createTask('talk slowly');
      const abort = new AbortController();
      const partial = nextEvent(id, (e) => e.type === 'content');

      const running = runner.run(id, session, abort.signal);
      model.push({ type: 'text_delta', text: 'Once upon ' });
      await partial;
      abort.abort(new RunAbort('shutdown'));
      await running;

      const task = (await store.getTask(id))!;
      expect(task.status).to.equal('failed');
      expect(task.error?.code).to.equal('EXECUTION_ERROR');
      expect(task.error?.message).to.include('shut down');
      const list = await store.listEvents(id, 0, 1_000);
      expect(list.at(-1)).to.deep.include({ type: 'error', data: task.error });
      expect(session.conversation!.at(-1)!.role).to.equal('user');
    });

    it('numbers the events of a run 1..N without gaps, ending with done', async () => {
      const model = new PreparedModel([
        toolTurn([toolUse('c1', 'p'), toolUse('c2', 'p')], { text: 'Let me look.' }),
        finalTurn('Here it is.'),
      ]);
      const tools = new FakeToolRouter({
        p: { handler: (_args, context) => { context.onProgress?.({ progress: 1 }); return text('x'); } },
      });
      const { events: list } = await run(runnerWith(model, tools), 'look');
      expect(list.map((e) => e.seq)).to.deep.equal(list.map((_e, i) => i + 1));
      expect(list[0]).to.deep.include({ type: 'status', data: { status: 'running' } });
      expect(list.slice(-2).map((e) => e.type)).to.deep.equal(['status', 'done']);
      expect(ofType(list, 'done')).to.deep.equal([{ finalResponse: 'Let me look.\n\nHere it is.' }]);
    });

    it('stores one assistant message per turn, with its tool calls and their outputs', async () => {
      const model = new PreparedModel([
        [
          { type: 'thought', subject: 'Plan', description: 'read the file' },
          ...toolTurn([toolUse('c1', 'read', { path: 'a.txt' })], { text: 'Reading.' }),
        ],
        finalTurn('The file says hi.'),
      ]);
      const tools = new FakeToolRouter({ read: { server: 'fs', handler: () => text('hi') } });
      const { id } = await run(runnerWith(model, tools), 'read a.txt');

      const messages = await store.listMessages(id);
      expect(messages.map((m) => m.role)).to.deep.equal(['user', 'assistant', 'assistant']);
      expect(messages[1]).to.deep.include({
        content: 'Reading.',
        thoughts: [{ subject: 'Plan', description: 'read the file' }],
        toolCalls: [{ callId: 'c1', toolName: 'read', server: 'fs', args: { path: 'a.txt' }, status: 'success', output: 'hi' }],
      });
      expect(messages[2]).to.include({ role: 'assistant', content: 'The file says hi.' });
      expect(messages[2]!.toolCalls ?? []).to.deep.equal([]);
    });

    it('scrubs secrets from events and stored messages while the model sees the real tool output', async () => {
      const secret = 'tok_9f8e7d6c5b4a';
      const model = new PreparedModel([
        toolTurn([toolUse('c1', 'whoami')]),
        [
          { type: 'text_delta', text: `The token is tok_9f8` },
          { type: 'text_delta', text: `e7d6c5b4a, done.` },
          { type: 'turn_end', content: [{ type: 'text', text: `The token is ${secret}, done.` }], stopReason: 'end_turn', usage: usage() },
        ],
      ]);
      const tools = new FakeToolRouter({ whoami: { handler: () => text(`token=${secret}`) } });
      const runner = runnerWith(model, tools);
      const { id, session } = await createTask('who am I?', { API_TOKEN: secret });
      await runner.run(id, session, new AbortController().signal);

      const list = await store.listEvents(id, 0, 1_000);
      const messages = await store.listMessages(id);
      expect(JSON.stringify(list)).not.to.include(secret);
      expect(JSON.stringify(messages)).not.to.include(secret);
      expect(JSON.stringify(await store.getTask(id))).not.to.include(secret);
      const partial = list.filter((e) => e.type === 'content' && e.data.isPartial).map((e) => e.data.text).join('');
      expect(partial).to.equal('The token is [secret:API_TOKEN], done.');
      expect(ofType(list, 'tool_result')).to.deep.equal([{ callId: 'c1', status: 'success', output: 'token=[secret:API_TOKEN]' }]);
      expect(JSON.stringify(model.requests[1]!.messages.at(-1))).to.include(`token=${secret}`);
    });

    // Regression (StreamScrubber): a secret whose last character is also the first of a secret was
    // streamed in two halves, so partial content events stored and sent it unscrubbed.
    it('never stores a secret in partial content when the secret ends with its own first character', async () => {
      const secret = 'secret-value-s';
      const model = new PreparedModel([finalTurn(`It is ${secret}`)]);
      const { id, session } = await createTask('tell me', { TOKEN: secret });
      await runnerWith(model, new FakeToolRouter({})).run(id, session, new AbortController().signal);

      const partial = (await store.listEvents(id, 0, 1_000)).filter((e) => e.type === 'content' && e.data.isPartial);
      expect(partial.map((e) => e.data.text).join('')).to.equal('It is [secret:TOKEN]');
    });
  });
});
