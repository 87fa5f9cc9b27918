import { expect } from 'chai';
import pino from 'pino';
import { randomUUID } from 'node:crypto';
import { ProtocolError } from '@modelcontextprotocol/client';
import type { CreateMessageRequestParams } from '@modelcontextprotocol/client';
import type { ProjectConfig } from '../../src/config.js';
import type { ServerRequestContext } from '../../src/mcp/serverRequests.js';
import type { ModelClient, ModelRequest, ModelStreamEvent } from '../../src/model/modelClient.js';
import { ApprovalGate } from '../../src/runtime/approvals/approvalGate.js';
import { EventLog, InProcessEventBus } from '../../src/runtime/events/events.js';
import { InputRequests } from '../../src/runtime/approvals/inputRequests.js';
import { SessionRegistry } from '../../src/runtime/runs/sessions.js';
import type { TaskSession } from '../../src/runtime/runs/sessions.js';
import { TaskServerRequests } from '../../src/runtime/runs/taskServerRequests.js';
import { UsageMeter } from '../../src/runtime/runs/usageMeter.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import type { TaskRecord } from '../../src/store/store.js';

/** A model that answers each request with the next prepared reply (or error); one more request fails loudly. */
class ReplyModel implements ModelClient {
  readonly description = 'reply-model';
  readonly requests: ModelRequest[] = [];
  constructor(private readonly replies: (string | Error)[]) {}

  async *stream(request: ModelRequest): AsyncGenerator<ModelStreamEvent> {
    this.requests.push(request);
    const reply = this.replies[this.requests.length - 1];
    if (reply === undefined) throw new Error(`ReplyModel: unexpected request ${this.requests.length}`);
    if (reply instanceof Error) throw reply;
    yield { type: 'turn_end', content: [{ type: 'text', text: reply }], stopReason: 'end_turn', usage: { inputTokens: 11, outputTokens: 7 } };
  }
}

const SAMPLE: CreateMessageRequestParams = { messages: [{ role: 'user', content: { type: 'text', text: 'Say hi' } }], systemPrompt: 'Be kind.', maxTokens: 40 };

describe('TaskServerRequests', () => {
  let store: SqliteStore;
  let sessions: SessionRegistry;
  let events: EventLog;
  let gate: ApprovalGate;
  let inputs: InputRequests;
  let task: TaskRecord;
  let session: TaskSession;
  let waits: string[];

  beforeEach(async () => {
    store = new SqliteStore(':memory:');
    sessions = new SessionRegistry(pino({ level: 'silent' }), 60_000);
    events = new EventLog(store, new InProcessEventBus());
    gate = new ApprovalGate(store);
    inputs = new InputRequests(store);
    waits = [];
    const now = new Date().toISOString();
    task = {
      id: randomUUID(), projectId: 'default', apiKeyId: null, endUserId: null, username: null, sessionId: randomUUID(), conversationId: randomUUID(),
      status: 'running', message: 'm', systemPrompt: null, showInHistory: true, autoExecute: true, env: null, error: null,
      usage: { inputTokens: 100, outputTokens: 50, turns: 3 }, createdAt: now, startedAt: now, completedAt: null, lastActivityAt: now, messageCount: 0, runStartSeq: 0, secretKeys: [],
    };
    await store.createTask(task);
    session = sessions.open(task.id);
  });

  afterEach(async () => {
    await sessions.closeAll();
    await store.close();
  });

  function handler(model: ModelClient, project: ProjectConfig = {}, autoExecute = true) {
    return new TaskServerRequests({
      task: { ...task, autoExecute }, project, session, signal: new AbortController().signal,
      emit: (type, data) => events.append(task.id, type, data, session.scrubber),
      waiting: { enter: async () => void waits.push('enter'), leave: async () => void waits.push('leave') },
      gate, inputs, model, usage: new UsageMeter(store, task.id, task.usage),
    });
  }

  const context = (): ServerRequestContext => ({ server: 'crm', callId: 'toolu_1', signal: new AbortController().signal });
  const stored = async (): Promise<Record<string, unknown>[]> => (await store.listEvents(task.id, 0, 1_000)).map((e) => ({ type: e.type, ...e.data }));

  describe('createMessage', () => {
    it('allow: calls the task\'s model with the request, adds its tokens (not a turn) to the task\'s usage, and shows the call', async () => {
      const model = new ReplyModel(['Hi there']);
      const result = await handler(model).createMessage(SAMPLE, context());
      expect(result).to.deep.equal({ role: 'assistant', content: { type: 'text', text: 'Hi there' }, model: 'reply-model', stopReason: 'endTurn' });
      expect(model.requests.map((r) => ({ system: r.system, messages: r.messages, tools: r.tools, maxTokens: r.maxTokens }))).to.deep.equal([
        { system: 'Be kind.', messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hi' }] }], tools: [], maxTokens: 40 },
      ]);
      expect((await store.getTask(task.id))!.usage).to.deep.equal({ inputTokens: 111, outputTokens: 57, turns: 3 });
      const [call, result_] = await stored();
      expect(call).to.deep.include({ type: 'tool_call', toolName: 'sampling', server: 'crm', parentCallId: 'toolu_1', status: 'executing' });
      expect(result_).to.deep.equal({ type: 'tool_result', callId: call!.callId, status: 'success', output: 'Hi there' });
      expect(waits).to.deep.equal([]);
    });

    it('deny: refuses with code -1 and the rule\'s reason; the model is never asked', async () => {
      const model = new ReplyModel([]);
      const project: ProjectConfig = { samplingPolicies: [{ server: 'crm', decision: 'deny', reason: 'no model for the CRM' }] };
      const error = await handler(model, project).createMessage(SAMPLE, context()).then(() => undefined, (err: unknown) => err);
      expect(error).to.be.instanceOf(ProtocolError).with.property('code', -1);
      expect((error as Error).message).to.equal('The sampling request was denied by policy: no model for the CRM.');
      expect(model.requests).to.deep.equal([]);
      expect((await stored()).map((e) => [e.type, e.status])).to.deep.equal([['tool_call', 'error'], ['tool_result', 'error']]);
    });

    it('ask: waits as a pending approval; proceed_always lets the server\'s next request through without asking', async () => {
      const model = new ReplyModel(['first', 'second']);
      const requests = handler(model, {}, false);
      const first = requests.createMessage(SAMPLE, context());
      const pending = await waitForPendingApproval();
      expect(pending).to.deep.include({ toolName: 'sampling', server: 'crm', tool: 'sampling/createMessage', policy: 'autoExecute is false' });
      expect(pending.args).to.deep.equal({ messages: [{ role: 'user', content: { type: 'text', text: 'Say hi' } }], systemPrompt: 'Be kind.', maxTokens: 40 });
      expect(model.requests).to.deep.equal([]);
      await gate.decide(task.id, pending.callId, { outcome: 'proceed_always' }, 'key:k1');
      expect((await first).content).to.deep.equal({ type: 'text', text: 'first' });
      expect(waits).to.deep.equal(['enter', 'leave']);

      expect((await requests.createMessage(SAMPLE, context())).content).to.deep.equal({ type: 'text', text: 'second' });
      expect((await store.listApprovals(task.id))).to.have.length(1);
    });

    it('ask with edited args: the model gets the person\'s version', async () => {
      const model = new ReplyModel(['edited answer']);
      const answer = handler(model, {}, false).createMessage(SAMPLE, context());
      const pending = await waitForPendingApproval();
      const edited = { messages: [{ role: 'user', content: { type: 'text', text: 'Say bye' } }], maxTokens: 5 };
      await gate.decide(task.id, pending.callId, { outcome: 'proceed_once', args: edited }, 'key:k1');
      await answer;
      expect(model.requests[0]!.messages).to.deep.equal([{ role: 'user', content: [{ type: 'text', text: 'Say bye' }] }]);
      expect(model.requests[0]!.system).to.equal('');
      expect(model.requests[0]!.maxTokens).to.equal(5);
    });

    it('a model failure is an internal error for the server, scrubbed of the task\'s secrets', async () => {
      session.addSecrets({ API_TOKEN: 's3cr3t-value' });
      const model = new ReplyModel([new Error('provider said s3cr3t-value')]);
      const error = await handler(model).createMessage(SAMPLE, context()).then(() => undefined, (err: unknown) => err);
      expect(error).to.be.instanceOf(ProtocolError).with.property('code', -32603);
      expect((error as Error).message).to.equal('The model failed to answer the sampling request: provider said [secret:API_TOKEN]');
      expect(JSON.stringify(await stored())).not.to.include('s3cr3t-value');
    });
  });

  describe('elicit', () => {
    it('puts the request before a person while the task waits, and gives the server the answer', async () => {
      const requests = handler(new ReplyModel([]));
      const result = requests.elicit({ message: 'Name?', requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } }, context());
      const requestId = await waitForInput();
      expect(waits).to.deep.equal(['enter']);
      await inputs.answer(task.id, requestId, { action: 'accept', content: { name: 'Ada' } }, 'key:k1');
      expect(await result).to.deep.equal({ action: 'accept', content: { name: 'Ada' } });
      expect(waits).to.deep.equal(['enter', 'leave']);
      const [required] = await stored();
      expect(required).to.deep.include({ type: 'input_required', server: 'crm', callId: 'toolu_1', mode: 'form', message: 'Name?' });
    });

    it('URL mode: the server gets the action only', async () => {
      const result = handler(new ReplyModel([])).elicit({ mode: 'url', message: 'Open it', url: 'https://example.com/x', elicitationId: 'e-1' }, context());
      await inputs.answer(task.id, await waitForInput(), { action: 'decline' }, 'key:k1');
      expect(await result).to.deep.equal({ action: 'decline' });
    });
  });

  // As a client does: the approval is asked for once the stream says so.
  async function waitForPendingApproval() {
    for (;;) {
      const asked = (await store.listEvents(task.id, 0, 1_000)).find((e) => e.type === 'tool_call' && e.data.status === 'awaiting_approval');
      if (asked) return (await store.getApproval(task.id, String(asked.data.callId)))!;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async function waitForInput(): Promise<string> {
    for (;;) {
      const required = (await store.listEvents(task.id, 0, 1_000)).find((e) => e.type === 'input_required');
      if (required) return String(required.data.requestId);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
});
