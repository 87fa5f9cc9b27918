import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import { ModelError } from '../model/modelClient.js';
import type { ContentBlock, ModelClient, ModelMessage, ToolDefinition } from '../model/modelClient.js';
import type { Store, TaskRecord, TaskUsage, Thought, ToolCallRecord } from '../store/store.js';
import { conversationFromMessages, pushUser, toolResultText } from './conversation.js';
import type { EventLog, EventType } from './events.js';
import { StreamScrubber } from './scrubber.js';
import type { TaskSession } from './sessions.js';
import type { ToolRouter } from './toolRouter.js';
import type { ProjectConfig } from '../config.js';
import type { ApprovalGate } from './approvalGate.js';
import { ToolCalls } from './toolCalls.js';
import type { TurnContext } from './toolCalls.js';
import { RequiredServerError } from './mcpToolRouter.js';

/** Why a run was aborted: the user cancelled it, or the service is shutting down. */
export class RunAbort extends Error {
  constructor(readonly kind: 'cancel' | 'shutdown') {
    super(kind === 'cancel' ? 'Task cancelled' : 'Airlock is shutting down');
    this.name = 'RunAbort';
  }
}

/** Emits one event of the run; `settle` resolves when every event emitted so far is stored and sent. */
type Emit = ((type: EventType, data: Record<string, unknown>) => Promise<unknown>) & { settle: () => Promise<unknown> };

export interface TaskRunnerOptions {
  store: Store;
  events: EventLog;
  tools: ToolRouter;
  /** The model of a project. */
  modelFor: (projectId: string) => ModelClient;
  /** The whole system prompt of a task. */
  systemPromptFor: (task: TaskRecord) => string;
  /** The task's workspace directory; it may not exist yet (a stdio server starting in it makes it). */
  workspaceFor: (taskId: string) => string;
  /** A project's configuration (tool policies, approval timeout). */
  projectFor: (projectId: string) => ProjectConfig;
  gate: ApprovalGate;
  maxTurns: number;
  logger: Logger;
}

/** What the loop does after a model turn (a tagged union, switched on exhaustively). */
type NextStep = { kind: 'final' } | { kind: 'tools'; calls: Extract<ContentBlock, { type: 'tool_use' }>[] };

/**
 * Runs the agent loop of one task message: model turn, tool calls, model turn, … until the model
 * answers without tools. Every state change is an event; every message is stored as it completes.
 */
export class TaskRunner {
  private readonly toolCalls: ToolCalls;

  constructor(private readonly options: TaskRunnerOptions) {
    this.toolCalls = new ToolCalls(options.gate);
  }

  // awaiting_approval while any call of the turn waits for a person (parallel calls may all wait).
  private waiting(taskId: string, emit: Emit, signal: AbortSignal): TurnContext['waiting'] {
    let count = 0;
    const { store } = this.options;
    return {
      enter: async () => {
        if (count++ === 0 && (await store.transitionTask(taskId, ['running'], { status: 'awaiting_approval' }))) await emit('status', { status: 'awaiting_approval' });
      },
      leave: async () => {
        // A cancelled run goes from awaiting_approval straight to cancelled.
        if (--count === 0 && !signal.aborted && (await store.transitionTask(taskId, ['awaiting_approval'], { status: 'running' }))) await emit('status', { status: 'running' });
      },
    };
  }

  async run(taskId: string, session: TaskSession, signal: AbortSignal): Promise<void> {
    const { store, logger } = this.options;
    const started = new Date().toISOString();
    const task = await store.getTask(taskId);
    if (!task) return;
    const moved = await store.transitionTask(taskId, ['pending', 'running'], { status: 'running', startedAt: task.startedAt ?? started, sessionId: session.sessionId });
    if (!moved) return; // cancelled while it waited in the queue
    // Appends take their sequence number when called, so high-rate events (deltas, progress) are not
    // awaited one by one: they share group commits, and `settle` waits for all of them where order
    // against task state matters (turn ends, the final status).
    const inFlight = new Set<Promise<unknown>>();
    const emit: Emit = (type, data) => {
      const appended = this.options.events.append(taskId, type, data, session.scrubber);
      inFlight.add(appended);
      void appended.then(() => inFlight.delete(appended), () => undefined);
      return appended;
    };
    emit.settle = () => Promise.all([...inFlight]);
    const log = logger.child({ taskId });
    await emit('status', { status: 'running' });

    let finalResponse = '';
    try {
      session.conversation ??= conversationFromMessages(await store.listMessages(taskId));
      finalResponse = await this.loop(task, session, signal, emit);
    } catch (err) {
      await closeTools(session);
      await emit.settle().catch(() => undefined);
      await this.finishAfterError(task, session, err, signal, emit, log);
      return;
    }
    // Servers are per run: a task that is done holds no processes or connections (a follow-up reopens them).
    await closeTools(session);
    await emit.settle();
    const now = new Date().toISOString();
    // One group commit for the three: the store applies writes in call order, and each event is
    // still sent only once it is stored.
    await Promise.all([
      store.transitionTask(taskId, ['running', 'awaiting_approval'], { status: 'completed', completedAt: now, error: null }),
      emit('status', { status: 'completed' }),
      emit('done', { finalResponse }),
    ]);
    log.info({ event: 'task_completed' }, 'task completed');
  }

  private async loop(task: TaskRecord, session: TaskSession, signal: AbortSignal, emit: Emit): Promise<string> {
    const { store, maxTurns } = this.options;
    const model = this.options.modelFor(task.projectId);
    const conversation = session.conversation!;
    const system = this.options.systemPromptFor(task);
    session.tools ??= await this.options.tools.openSession({
      taskId: task.id,
      projectId: task.projectId,
      variables: session.variables(task.env),
      secretKeys: session.secretKeys(),
      workspaceDir: this.options.workspaceFor(task.id),
      onStatus: (message) => void emit('status', { status: 'running', message }),
      signal,
    });
    const answers: string[] = [];
    let usage: TaskUsage = { ...task.usage };

    for (let turn = 1; turn <= maxTurns; turn++) {
      signal.throwIfAborted();
      // Listed every turn: servers may change their tools mid-task (the pool caches the list).
      const tools: ToolDefinition[] = await session.tools.listTools();
      const streamed = new StreamScrubber(session.scrubber);
      const thoughts: Thought[] = [];
      let end: { content: ContentBlock[]; usage: { inputTokens: number; outputTokens: number } } | undefined;
      for await (const event of model.stream({ system, messages: conversation, tools, signal })) {
        switch (event.type) {
          case 'text_delta': {
            const safe = streamed.push(event.text);
            if (safe) void emit('content', { text: safe, isPartial: true });
            break;
          }
          case 'thinking_delta':
            break; // shown whole, as a thought, when the block completes
          case 'thought':
            thoughts.push({ subject: event.subject, description: event.description });
            void emit('thought', { subject: event.subject, description: event.description });
            break;
          case 'retrying':
            await emit('status', { status: 'retrying', message: `Model provider: ${event.reason}; retry ${event.attempt} in ${Math.round(event.delayMs)} ms` });
            break;
          case 'turn_end':
            end = event;
            break;
        }
      }
      signal.throwIfAborted();
      if (!end) throw new ModelError(`${model.description} ended its stream without a turn`);
      const rest = streamed.flush();
      if (rest) void emit('content', { text: rest, isPartial: true });
      const text = end.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
      if (text) {
        void emit('content', { text, isPartial: false });
        answers.push(text);
      }
      usage = { inputTokens: usage.inputTokens + end.usage.inputTokens, outputTokens: usage.outputTokens + end.usage.outputTokens, turns: usage.turns + 1 };
      // The turn's last events and its usage share one commit (the store applies writes in call order).
      await Promise.all([emit.settle(), store.updateTask(task.id, { usage })]);
      conversation.push({ role: 'assistant', content: end.content });

      const next: NextStep = nextStep(end.content);
      switch (next.kind) {
        case 'final':
          await this.storeAssistant(task.id, session, text, thoughts, []);
          return answers.join('\n\n');
        case 'tools': {
          const turnContext = { task, project: this.options.projectFor(task.projectId), session, signal, emit, waiting: this.waiting(task.id, emit, signal) };
          const records = await Promise.all(next.calls.map((call) => this.toolCalls.run(turnContext, call)));
          pushUser(conversation, records.map(({ result, record }) => ({ type: 'tool_result' as const, toolUseId: record.callId, content: result.content, isError: result.isError })));
          await this.storeAssistant(task.id, session, text, thoughts, records.map((r) => r.record));
          break;
        }
      }
    }
    throw new ModelError(`The task stopped after ${maxTurns} model turns without a final answer (tasks.maxTurns)`);
  }

  private async storeAssistant(taskId: string, session: TaskSession, text: string, thoughts: Thought[], toolCalls: ToolCallRecord[]): Promise<void> {
    if (!text && !thoughts.length && !toolCalls.length) return;
    await this.options.store.appendMessage(session.scrubber.value({
      id: randomUUID(), taskId, role: 'assistant' as const, content: text, createdAt: new Date().toISOString(), thoughts, toolCalls,
    }));
  }

  private async finishAfterError(
    task: TaskRecord, session: TaskSession, err: unknown, signal: AbortSignal,
    emit: Emit, log: Logger,
  ): Promise<void> {
    const { store } = this.options;
    repairConversation(session.conversation);
    const now = new Date().toISOString();
    const abort = signal.aborted && signal.reason instanceof RunAbort ? signal.reason : undefined;
    if (abort?.kind === 'cancel') {
      await store.transitionTask(task.id, ['pending', 'running', 'awaiting_approval'], { status: 'cancelled', completedAt: now });
      await emit('status', { status: 'cancelled' });
      await emit('error', { code: 'CANCELLED', message: 'Task cancelled' });
      log.info({ event: 'task_cancelled' }, 'task cancelled');
      return;
    }
    const message = abort
      ? 'Airlock shut down while this task was running; send a follow-up to continue'
      : err instanceof ModelError || err instanceof RequiredServerError
        ? err.message
        : `Task failed: ${describeError(err)}`;
    const error = session.scrubber.value({ code: 'EXECUTION_ERROR', message });
    await store.transitionTask(task.id, ['pending', 'running', 'awaiting_approval'], { status: 'failed', completedAt: now, error });
    await emit('status', { status: 'failed' });
    await emit('error', error);
    if (abort || err instanceof ModelError || err instanceof RequiredServerError) log.warn({ event: 'task_failed', reason: error.message }, 'task failed');
    else log.error({ event: 'task_failed', err: session.scrubber.text(describeError(err)) }, 'task failed with an unexpected error');
  }
}

async function closeTools(session: TaskSession): Promise<void> {
  const tools = session.tools;
  session.tools = null;
  await tools?.close().catch(() => undefined);
}

function nextStep(content: ContentBlock[]): NextStep {
  const calls = content.filter((b): b is Extract<ContentBlock, { type: 'tool_use' }> => b.type === 'tool_use');
  return calls.length ? { kind: 'tools', calls } : { kind: 'final' };
}

// A run that stopped between a tool_use and its result leaves a conversation the model API would
// refuse; answer the open calls so a follow-up can go on from it.
function repairConversation(conversation: ModelMessage[] | null): void {
  const last = conversation?.at(-1);
  if (!conversation || last?.role !== 'assistant') return;
  const open = last.content.filter((b) => b.type === 'tool_use');
  if (open.length) {
    pushUser(conversation, open.map((b) => ({ type: 'tool_result' as const, toolUseId: b.id, content: [{ type: 'text' as const, text: 'The call was cancelled.' }], isError: true })));
  }
}

