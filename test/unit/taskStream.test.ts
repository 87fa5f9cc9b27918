import { ApprovalGate } from '../../src/runtime/approvals/approvalGate.js';
import { InputRequests } from '../../src/runtime/approvals/inputRequests.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { formatSseEvent } from '../../src/api/sse.js';
import { ServiceError } from '../../src/errors.js';
import { ScriptedModelClient } from '../../src/model/scriptedModelClient.js';
import { EventLog, InProcessEventBus } from '../../src/runtime/events/events.js';
import type { EventType } from '../../src/runtime/events/events.js';
import type { Principal } from '../../src/runtime/security/principal.js';
import { SessionRegistry } from '../../src/runtime/runs/sessions.js';
import { InProcessTaskQueue } from '../../src/runtime/tasks/taskQueue.js';
import { TaskRunner } from '../../src/runtime/runs/taskRunner.js';
import { TaskService } from '../../src/runtime/tasks/taskService.js';
import { TaskStreams } from '../../src/runtime/tasks/taskStream.js';
import type { StreamFrame, StreamSink, TaskStreamOptions } from '../../src/runtime/tasks/taskStream.js';
import { EmptyToolRouter } from '../../src/runtime/tools/toolRouter.js';
import { Workspaces } from '../../src/sandbox/workspaces.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import type { EventRecord, TaskRecord, TaskStatus } from '../../src/store/store.js';

/** A StreamSink that records frames; the test sets how far behind the client is. */
class FakeSink implements StreamSink {
  readonly frames: StreamFrame[] = [];
  bufferedBytes = 0;
  ended = false;
  destroyed = false;
  private isClosed = false;
  private readonly callbacks: (() => void)[] = [];

  get closed(): boolean {
    return this.isClosed;
  }

  write(frame: StreamFrame): boolean {
    if (!this.isClosed) this.frames.push(frame);
    return true;
  }

  drained(): Promise<void> {
    return Promise.resolve();
  }

  end(): void {
    if (this.isClosed) return;
    this.ended = true;
    this.close();
  }

  destroy(): void {
    if (this.isClosed) return;
    this.destroyed = true;
    this.close();
  }

  onClose(callback: () => void): void {
    if (this.isClosed) callback();
    else this.callbacks.push(callback);
  }

  ids(): number[] {
    return this.frames.map((f) => f.id);
  }

  private close(): void {
    this.isClosed = true;
    for (const callback of this.callbacks.splice(0)) callback();
  }
}

/** The real store, with a hook run around each listEvents: lets a test publish events mid-replay. */
class HookedStore extends SqliteStore {
  beforeListEvents: (() => Promise<void>) | null = null;
  afterListEvents: (() => Promise<void>) | null = null;

  override async listEvents(taskId: string, afterSeq: number, limit: number, untilSeq?: number): Promise<EventRecord[]> {
    const before = this.beforeListEvents;
    this.beforeListEvents = null;
    await before?.();
    const events = await super.listEvents(taskId, afterSeq, limit, untilSeq);
    const after = this.afterListEvents;
    this.afterListEvents = null;
    await after?.();
    return events;
  }
}

describe('TaskStreams', () => {
  const principal: Principal = { kind: 'apiKey', projectId: 'default', apiKeyId: 'key-1', keyName: null };
  let store: HookedStore;
  let bus: InProcessEventBus;
  let events: EventLog;
  let sessions: SessionRegistry;
  let service: TaskService;

  beforeEach(() => {
    store = new HookedStore(':memory:');
    bus = new InProcessEventBus();
    events = new EventLog(store, bus);
    sessions = new SessionRegistry(pino({ level: 'silent' }), 60_000);
    const logger = pino({ level: 'silent' });
    const runner = new TaskRunner({
      store, events, tools: new EmptyToolRouter(), modelFor: () => new ScriptedModelClient(), systemPromptFor: () => '', workspaceFor: async () => tmpdir(), workspaceDirOf: () => tmpdir(), projectFor: () => ({}), gate: new ApprovalGate(store), inputs: new InputRequests(store), maxTurns: 5, logger,
    });
    // No test here touches files: the workspaces root is never created.
    const workspaces = new Workspaces(join(tmpdir(), 'airlock-taskstream-no-workspaces'));
    service = new TaskService({ store, events, queue: new InProcessTaskQueue(1), runner, sessions, gate: new ApprovalGate(store), inputs: new InputRequests(store), workspaces, logger });
  });

  afterEach(async () => {
    await sessions.closeAll();
    await store.close();
  });

  function streams(options: Partial<TaskStreamOptions> = {}): TaskStreams {
    return new TaskStreams({ store, bus, service, ...options });
  }

  /** A task row with one user message, in the given status, as a run in progress leaves it. */
  async function createTask(status: TaskStatus = 'running', projectId = 'default'): Promise<string> {
    const id = randomUUID();
    const now = new Date().toISOString();
    const task: TaskRecord = {
      id, projectId, apiKeyId: 'key-1', endUserId: null, username: null, sessionId: randomUUID(), conversationId: randomUUID(),
      status, message: 'hello', systemPrompt: null, showInHistory: true, autoExecute: true, env: null, error: null,
      usage: { inputTokens: 0, outputTokens: 0, turns: 0 }, createdAt: now, startedAt: now, completedAt: null,
      lastActivityAt: now, messageCount: 0, runStartSeq: 0, secretKeys: [],
    };
    await store.createTask(task);
    await store.appendMessage({ id: randomUUID(), taskId: id, role: 'user', content: 'hello', createdAt: now });
    return id;
  }

  const emit = (taskId: string, type: EventType, data: Record<string, unknown>) => events.append(taskId, type, data);

  async function emitContent(taskId: string, count: number): Promise<void> {
    for (let i = 0; i < count; i++) await emit(taskId, 'content', { text: `piece ${i}`, isPartial: true });
  }

  async function open(taskStreams: TaskStreams, taskId: string, afterSeq?: number): Promise<FakeSink> {
    const sink = new FakeSink();
    const start = await taskStreams.prepare(principal, taskId, afterSeq);
    await start(sink);
    return sink;
  }

  describe('#prepare()', () => {
    it('answers NOT_FOUND for a task of another project', async () => {
      const id = await createTask('running', 'other-project');
      let caught: unknown;
      try {
        await streams().prepare(principal, id, undefined);
      } catch (err) {
        caught = err;
      }
      expect(caught).to.be.instanceOf(ServiceError);
      expect((caught as ServiceError).code).to.equal('NOT_FOUND');
    });
  });

  describe('resume from a sequence', () => {
    it('sends exactly the events after the given sequence, then live ones', async () => {
      const id = await createTask();
      await emitContent(id, 5);
      const sink = await open(streams(), id, 2);
      expect(sink.ids()).to.deep.equal([3, 4, 5]);
      expect(sink.frames.map((f) => f.data)).to.deep.equal([2, 3, 4].map((i) => ({ text: `piece ${i}`, isPartial: true })));

      await emit(id, 'status', { status: 'completed' });
      await emit(id, 'done', { finalResponse: 'ok' });
      expect(sink.ids()).to.deep.equal([3, 4, 5, 6, 7]);
      expect(sink.ended).to.equal(true);
    });

    it('ends after the stored events when the task has finished', async () => {
      const id = await createTask('completed');
      await emitContent(id, 3);
      const sink = await open(streams(), id, 0);
      expect(sink.ids()).to.deep.equal([1, 2, 3]);
      expect(sink.ended).to.equal(true);
      expect(bus.subscriberCount(id)).to.equal(0);
    });

    it('loses and repeats nothing when events are published while the stored ones are read', async () => {
      const id = await createTask();
      await emitContent(id, 3);
      // One event lands before the page is read (so it is both stored and buffered), one after.
      store.beforeListEvents = async () => void (await emit(id, 'content', { text: 'before read', isPartial: true }));
      store.afterListEvents = async () => void (await emit(id, 'content', { text: 'after read', isPartial: true }));
      const sink = await open(streams(), id, 1);
      await emit(id, 'content', { text: 'live', isPartial: true });

      expect(sink.ids()).to.deep.equal([2, 3, 4, 5, 6]);
      expect(sink.frames.slice(2).map((f) => (f.data as { text: string }).text)).to.deep.equal(['before read', 'after read', 'live']);
    });
  });

  describe('history, then catch-up, then live', () => {
    it('sends history and the catch-up of the live turn with the snapshot sequence as id', async () => {
      const id = await createTask();
      await emit(id, 'status', { status: 'running' });
      await emit(id, 'content', { text: 'Hel', isPartial: true });
      await emit(id, 'thought', { subject: 'Plan', description: 'greet' });
      await emit(id, 'content', { text: 'lo', isPartial: true });
      await emit(id, 'tool_call', { callId: 'c1', toolName: 'look', args: { at: 'sky' }, status: 'executing' });
      await emit(id, 'tool_result', { callId: 'c1', status: 'success', output: 'blue' });

      const sink = await open(streams(), id);
      expect(sink.frames.map((f) => [f.event, f.id])).to.deep.equal([
        ['history_message', 6], ['history_done', 6], ['content', 6], ['thought', 6], ['tool_call', 6], ['tool_result', 6],
      ]);
      expect(sink.frames[0]!.data).to.include({ role: 'user', content: 'hello' });
      expect(sink.frames[0]!.data).not.to.have.any.keys('taskId', 'afterSeq');
      expect(sink.frames[1]!.data).to.deep.equal({ messageCount: 1, isStreaming: true });
      expect(sink.frames[2]!.data).to.deep.equal({ text: 'Hello', isPartial: true });
      expect(sink.frames[4]!.data).to.deep.equal({ callId: 'c1', toolName: 'look', status: 'executing', args: { at: 'sky' } });
      expect(sink.frames[5]!.data).to.deep.equal({ callId: 'c1', status: 'success', output: 'blue' });

      await emit(id, 'content', { text: ' there', isPartial: true });
      expect(sink.frames.at(-1)).to.deep.equal({ event: 'content', data: { text: ' there', isPartial: true }, id: 7 });
    });

    it('sends only history and history_done for a finished task, then ends', async () => {
      const id = await createTask('completed');
      await emit(id, 'done', { finalResponse: 'x' });
      const sink = await open(streams(), id);
      expect(sink.frames.map((f) => f.event)).to.deep.equal(['history_message', 'history_done']);
      expect(sink.frames[1]!.data).to.deep.equal({ messageCount: 1, isStreaming: false });
      expect(sink.ended).to.equal(true);
    });

    it('loses and repeats nothing when events are published during the catch-up', async () => {
      const id = await createTask();
      await emitContent(id, 2);
      store.beforeListEvents = async () => {
        await emit(id, 'content', { text: 'during 1', isPartial: true });
        await emit(id, 'content', { text: 'during 2', isPartial: true });
      };
      const sink = await open(streams(), id);
      await emit(id, 'content', { text: 'live', isPartial: true });

      expect(sink.frames.map((f) => [f.event, f.id])).to.deep.equal([
        ['history_message', 2], ['history_done', 2], ['content', 2], ['content', 3], ['content', 4], ['content', 5],
      ]);
      expect(sink.frames[2]!.data).to.deep.equal({ text: 'piece 0piece 1', isPartial: true });
      expect(sink.frames.slice(3).map((f) => (f.data as { text: string }).text)).to.deep.equal(['during 1', 'during 2', 'live']);
    });
  });

  describe('slow clients', () => {
    const realNow = Date.now;
    let now = 0;

    beforeEach(() => {
      now = realNow();
      Date.now = () => now;
    });
    afterEach(() => {
      Date.now = realNow;
    });

    const limits = { slowClientBufferBytes: 1_000, slowClientGraceMs: 100, maxClientBufferBytes: 10_000 };

    it('drops a client that stays behind past the grace period while the others keep receiving', async () => {
      const id = await createTask();
      const taskStreams = streams(limits);
      const slow = await open(taskStreams, id, 0);
      const healthy = await open(taskStreams, id, 0);

      slow.bufferedBytes = 5_000;
      await emit(id, 'content', { text: 'a', isPartial: true });
      expect(slow.destroyed).to.equal(false);
      now += 101;
      await emit(id, 'content', { text: 'b', isPartial: true });
      expect(slow.destroyed).to.equal(true);

      await emit(id, 'content', { text: 'c', isPartial: true });
      expect(slow.ids()).to.deep.equal([1, 2]);
      expect(healthy.ids()).to.deep.equal([1, 2, 3]);
      expect(healthy.destroyed).to.equal(false);
      expect(bus.subscriberCount(id)).to.equal(1);
    });

    it('keeps a client that catches up within the grace period', async () => {
      const id = await createTask();
      const sink = await open(streams(limits), id, 0);

      sink.bufferedBytes = 5_000;
      await emit(id, 'content', { text: 'a', isPartial: true });
      now += 60;
      sink.bufferedBytes = 10;
      await emit(id, 'content', { text: 'b', isPartial: true });
      sink.bufferedBytes = 5_000;
      now += 60;
      await emit(id, 'content', { text: 'c', isPartial: true });
      now += 60;
      await emit(id, 'content', { text: 'd', isPartial: true });

      expect(sink.destroyed).to.equal(false);
      expect(sink.ids()).to.deep.equal([1, 2, 3, 4]);
    });

    it('drops a client past maxClientBufferBytes at once', async () => {
      const id = await createTask();
      const sink = await open(streams(limits), id, 0);
      sink.bufferedBytes = 10_001;
      await emit(id, 'content', { text: 'a', isPartial: true });
      expect(sink.destroyed).to.equal(true);
      await emit(id, 'content', { text: 'b', isPartial: true });
      expect(sink.ids()).to.deep.equal([1]);
    });
  });
});

describe('formatSseEvent', () => {
  // The hosted API's Python sample strips the prefix with line.replace('data: ', ''), every occurrence.
  it('writes a "data: " inside a string with an escaped space, so that a client removing every "data: " reads the same value', () => {
    const data = { text: 'the data: 42, and data:  twice data: ', 'data: key': 'x' };
    const line = formatSseEvent({ event: 'content', data, id: 1 }).split('\n')[1]!;
    expect(line.indexOf('data: ')).to.equal(0);
    expect(line.lastIndexOf('data: ')).to.equal(0);
    expect(JSON.parse(line.replaceAll('data: ', ''))).to.deep.equal(data);
    expect(JSON.parse(line.slice('data: '.length))).to.deep.equal(data);
  });

  it('writes event, one line of JSON data, id and a blank line', () => {
    expect(formatSseEvent({ event: 'status', data: { status: 'running' }, id: 3 })).to.equal('event: status\ndata: {"status":"running"}\nid: 3\n\n');
  });

  it('keeps data with newlines and unicode on one line, and it parses back to the same data', () => {
    const data = { text: 'line 1\nline 2\r\nline 3\rend', note: 'naïve café ✓ 🚀 日本語', nested: { list: ['a\nb'] } };
    const out = formatSseEvent({ event: 'content', data, id: 42 });
    expect(out).to.equal(`event: content\ndata: ${JSON.stringify(data)}\nid: 42\n\n`);
    const lines = out.split(/\r\n|\r|\n/);
    expect(lines).to.have.length(5);
    expect(lines[0]).to.equal('event: content');
    expect(lines[1]!.startsWith('data: ')).to.equal(true);
    expect(JSON.parse(lines[1]!.slice('data: '.length))).to.deep.equal(data);
    expect(lines.slice(2)).to.deep.equal(['id: 42', '', '']);
  });
});
