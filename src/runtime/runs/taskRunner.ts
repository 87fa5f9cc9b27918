import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { describeError } from '../../errors.js';
import { ModelError } from '../../model/modelClient.js';
import type { ContentBlock, ModelClient, ModelMessage, ToolDefinition } from '../../model/modelClient.js';
import type { Store, TaskRecord, TaskStatus, Thought, ToolCallRecord } from '../../store/store.js';
import { conversationFromMessages, pushUser, toolResultText } from './conversation.js';
import { readEvents } from '../events/events.js';
import type { EventLog, EventType } from '../events/events.js';
import { StreamScrubber } from '../security/scrubber.js';
import type { TaskSession } from './sessions.js';
import type { ToolRouter } from '../tools/toolRouter.js';
import type { ProjectConfig } from '../../config.js';
import type { ApprovalGate } from '../approvals/approvalGate.js';
import { ToolCalls } from './toolCalls.js';
import type { TurnContext } from './toolCalls.js';
import { RequiredServerError } from '../tools/mcpToolRouter.js';
import type { InputRequests } from '../approvals/inputRequests.js';
import { RunAbort } from '../approvals/runAbort.js';
import { TaskServerRequests } from './taskServerRequests.js';
import { unfinishedTurn } from './turnState.js';
import type { UnfinishedTurn } from './turnState.js';
import { UsageMeter } from './usageMeter.js';


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
  /** The task's workspace directory, created if it is not there yet. */
  workspaceFor: (taskId: string) => Promise<string>;
  /** Where the task's workspace directory is (or will be): nothing is created. */
  workspaceDirOf: (taskId: string) => string;
  /** A project's configuration (tool policies, approval timeout). */
  projectFor: (projectId: string) => ProjectConfig;
  /** A warning for the first `status` event of every run of a project's tasks (their processes are not isolated as configured). */
  runWarningFor?: (projectId: string) => string | undefined;
  gate: ApprovalGate;
  /** Where MCP servers' input requests wait for a person. */
  inputs: InputRequests;
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

  // awaiting_approval while anything of the run waits for a person: tool calls (parallel calls may
  // all wait), and its MCP servers' input and sampling requests.
  private waiting(taskId: string, emit: Emit, signal: AbortSignal): TurnContext['waiting'] {
    let count = 0;
    const { store } = this.options;
    return {
      // Both writes are issued before enter() first awaits, so the caller's tool_call event, emitted in
      // the same tick, commits with them (the store applies writes in call order). A run that is not
      // aborted owns its task's status, so the transition from running holds.
      enter: async () => {
        if (count++ !== 0 || signal.aborted) return;
        await Promise.all([store.transitionTask(taskId, ['running'], { status: 'awaiting_approval' }), emit('status', { status: 'awaiting_approval' })]);
      },
      leave: async () => {
        // A cancelled run goes from awaiting_approval straight to cancelled.
        if (--count === 0 && !signal.aborted && (await store.transitionTask(taskId, ['awaiting_approval'], { status: 'running' }))) await emit('status', { status: 'running' });
      },
    };
  }

  /**
   * Runs the task's latest message. `resume` continues a run that a previous process suspended while
   * it waited for approvals, once they are decided: it finishes that turn, then goes on as usual.
   */
  async run(taskId: string, session: TaskSession, signal: AbortSignal, mode: 'start' | 'resume' = 'start'): Promise<void> {
    const { store } = this.options;
    const started = new Date().toISOString();
    // A run without the conversation in memory (a task queued without a session) reads it in the
    // same round trip as the task: nothing adds a message while the task is pending or running.
    const [task, stored] = await Promise.all([store.getTask(taskId), mode === 'start' && !session.conversation ? store.listMessages(taskId) : undefined]);
    if (!task) return;
    const from: TaskStatus[] = mode === 'resume' ? ['awaiting_approval'] : ['pending', 'running'];
    if (!from.includes(task.status)) return; // cancelled while it waited in the queue (or resumed by a concurrent approval)
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
    const warning = this.options.runWarningFor?.(task.projectId);
    // The status and its event commit together. Only this process's queue starts a run of the task,
    // so the status read above still holds, unless it changed meanwhile: then the run ends here (and
    // its running event, already on its way, is followed by nothing).
    const [moved] = await Promise.all([
      store.transitionTask(taskId, from, { status: 'running', startedAt: task.startedAt ?? started, sessionId: session.sessionId }),
      emit('status', { status: 'running', ...(warning ? { message: warning } : {}) }),
    ]);
    if (!moved) {
      session.log.warn({ taskId, event: 'run_not_started' }, 'the task changed status as its run started; the run ends');
      return;
    }

    let finalResponse = '';
    try {
      let unfinished: UnfinishedTurn | undefined;
      const missing = task.secretKeys.filter((key) => !session.secretKeys().has(key));
      if (mode === 'resume') {
        const messages = await store.listMessages(taskId);
        session.conversation = conversationFromMessages(messages);
        unfinished = unfinishedTurn(await readEvents(store, taskId, messages.at(-1)?.afterSeq ?? 0));
        if (missing.length) {
          if (unfinished) await this.abandon(task.id, session, unfinished, emit);
          throw new SecretsLostError(missing);
        }
      } else if (missing.length) {
        // A follow-up to a task whose session expired (or outlived a restart) without its secrets.
        await emit('status', { status: 'running', message: `The task's secrets (${missing.join(', ')}) ended with its previous session; this run goes on without them. Send them with a follow-up if the task needs them.` });
      }
      session.conversation ??= conversationFromMessages(stored ?? (await store.listMessages(taskId)));
      finalResponse = await this.loop(task, session, signal, emit, unfinished);
    } catch (err) {
      await closeTools(session);
      await emit.settle().catch(() => undefined);
      await this.finishAfterError(task, session, err, signal, emit);
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
    // The task's id in each line rather than a child logger per run (pino rebuilds its redaction for
    // each child); the session's log scrubs the line of the task's secrets.
    session.log.info({ taskId, event: 'task_completed' }, 'task completed');
  }

  private async loop(task: TaskRecord, session: TaskSession, signal: AbortSignal, emit: Emit, unfinished?: UnfinishedTurn): Promise<string> {
    const { store, maxTurns } = this.options;
    const model = this.options.modelFor(task.projectId);
    const project = this.options.projectFor(task.projectId);
    const conversation = session.conversation!;
    const system = this.options.systemPromptFor(task);
    const waiting = this.waiting(task.id, emit, signal);
    const usage = new UsageMeter(store, task.id, task.usage);
    // The hosted API's transient states: `connecting` while the model and MCP servers connect,
    // `processing` while the model works (the task's own status stays `running`).
    void emit('status', { status: 'connecting' });
    session.tools ??= await this.options.tools.openSession({
      taskId: task.id,
      projectId: task.projectId,
      variables: session.variables(task.env),
      secretKeys: session.secretKeys(),
      workspaceDir: this.options.workspaceDirOf(task.id),
      prepareWorkspace: once(() => this.options.workspaceFor(task.id)),
      onStatus: (message) => void emit('status', { status: 'running', message }),
      signal,
      serverRequests: new TaskServerRequests({ task, project, session, signal, emit, waiting, gate: this.options.gate, inputs: this.options.inputs, model, usage }),
    });
    const answers: string[] = [];
    if (unfinished) {
      // The turn a previous process was in: its calls are completed as decided, not asked again.
      const approvals = new Map((await store.listApprovals(task.id)).map((a) => [a.callId, a]));
      conversation.push({ role: 'assistant', content: assistantBlocks(unfinished) });
      const context = { task, project, session, signal, emit, waiting };
      const records = await Promise.all(unfinished.calls.map((call) => this.toolCalls.resume(context, call, approvals.get(call.callId))));
      pushUser(conversation, records.map(({ result, record }) => ({ type: 'tool_result' as const, toolUseId: record.callId, content: result.content, isError: result.isError })));
      await this.storeAssistant(task.id, session, unfinished.text, unfinished.thoughts, records.map((r) => r.record));
      if (unfinished.text) answers.push(unfinished.text);
    }

    for (let turn = 1; turn <= maxTurns; turn++) {
      signal.throwIfAborted();
      // Listed every turn: servers may change their tools mid-task (the pool caches the list).
      const tools: ToolDefinition[] = await session.tools.listTools();
      void emit('status', { status: 'processing' });
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
      const next: NextStep = nextStep(end.content);
      // The turn's last events, its usage and a final answer's message share one commit (the store
      // applies writes in call order, so the message still comes after the events it follows).
      await Promise.all([emit.settle(), usage.add(end.usage, 1), next.kind === 'final' && this.storeAssistant(task.id, session, text, thoughts, [])]);
      conversation.push({ role: 'assistant', content: end.content });

      switch (next.kind) {
        case 'final':
          return answers.join('\n\n');
        case 'tools': {
          const turnContext = { task, project, session, signal, emit, waiting };
          const records = await Promise.all(next.calls.map((call) => this.toolCalls.run(turnContext, call)));
          pushUser(conversation, records.map(({ result, record }) => ({ type: 'tool_result' as const, toolUseId: record.callId, content: result.content, isError: result.isError })));
          await this.storeAssistant(task.id, session, text, thoughts, records.map((r) => r.record));
          break;
        }
      }
    }
    throw new ModelError(`The task stopped after ${maxTurns} model turns without a final answer (tasks.maxTurns)`);
  }

  // A resumed run that cannot go on (its secrets are gone) records the turn it was in, its waiting
  // calls marked as not run, so history and a follow-up see a whole turn.
  private async abandon(taskId: string, session: TaskSession, unfinished: UnfinishedTurn, emit: Emit): Promise<void> {
    const output = 'Not run: the task stopped before this call could run.';
    const records: ToolCallRecord[] = [];
    for (const call of unfinished.calls) {
      const { result, ...rest } = call;
      if (!result) await emit('tool_result', { callId: call.callId, status: 'cancelled', output, ...(call.approvalId ? { approvalId: call.approvalId } : {}) });
      records.push({ ...rest, status: result?.status ?? 'cancelled', output: result?.output ?? output } as ToolCallRecord);
    }
    await emit.settle();
    await this.storeAssistant(taskId, session, unfinished.text, unfinished.thoughts, records);
    // The next run rebuilds the conversation from the store, where this turn now is.
    session.conversation = null;
  }

  private async storeAssistant(taskId: string, session: TaskSession, text: string, thoughts: Thought[], toolCalls: ToolCallRecord[]): Promise<void> {
    if (!text && !thoughts.length && !toolCalls.length) return;
    await this.options.store.appendMessage(session.scrubber.value({
      id: randomUUID(), taskId, role: 'assistant' as const, content: text, createdAt: new Date().toISOString(), thoughts, toolCalls,
    }));
  }

  private async finishAfterError(
    task: TaskRecord, session: TaskSession, err: unknown, signal: AbortSignal,
    emit: Emit,
  ): Promise<void> {
    const { store } = this.options;
    repairConversation(session.conversation);
    const now = new Date().toISOString();
    const abort = signal.aborted && signal.reason instanceof RunAbort ? signal.reason : undefined;
    if (abort?.kind === 'suspend' && (await store.getTask(task.id))?.status === 'awaiting_approval') {
      // Its approvals stay pending in the store; the next process resumes the task once they are decided.
      session.log.info({ taskId: task.id, event: 'task_suspended' }, 'task suspended while it waits for approval');
      return;
    }
    if (abort?.kind === 'cancel') {
      await store.transitionTask(task.id, ['pending', 'running', 'awaiting_approval'], { status: 'cancelled', completedAt: now });
      await emit('status', { status: 'cancelled' });
      await emit('error', { code: 'CANCELLED', message: 'Task cancelled' });
      session.log.info({ taskId: task.id, event: 'task_cancelled' }, 'task cancelled');
      return;
    }
    const message = abort
      ? 'Airlock shut down while this task was running; send a follow-up to continue'
      : err instanceof ModelError || err instanceof RequiredServerError || err instanceof SecretsLostError
        ? err.message
        : `Task failed: ${describeError(err)}`;
    const error = session.scrubber.value({ code: 'EXECUTION_ERROR', message });
    await store.transitionTask(task.id, ['pending', 'running', 'awaiting_approval'], { status: 'failed', completedAt: now, error });
    await emit('status', { status: 'failed' });
    await emit('error', error);
    const expected = abort || err instanceof ModelError || err instanceof RequiredServerError || err instanceof SecretsLostError;
    if (expected) session.log.warn({ taskId: task.id, event: 'task_failed', reason: error.message }, 'task failed');
    else session.log.error({ taskId: task.id, event: 'task_failed', err: describeError(err) }, 'task failed with an unexpected error');
  }
}

/** A resumed task whose secrets died with the process that was given them. */
export class SecretsLostError extends Error {
  constructor(readonly keys: string[]) {
    super(`Airlock restarted while this task waited for approval, and its secrets (${keys.join(', ')}) are kept only in memory. Send a follow-up that carries the secrets again to continue.`);
    this.name = 'SecretsLostError';
  }
}

/** The assistant message of an unfinished turn, as the model produced it. */
function assistantBlocks(turn: UnfinishedTurn): ContentBlock[] {
  return [
    ...(turn.text ? [{ type: 'text' as const, text: turn.text }] : []),
    ...turn.calls.map((call) => ({ type: 'tool_use' as const, id: call.callId, name: call.toolName, input: call.args })),
  ];
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

/** `fn`'s first call's promise, for every call (a failed one is tried again on the next call). */
function once(fn: () => Promise<unknown>): () => Promise<void> {
  let done: Promise<void> | null = null;
  return () => (done ??= fn().then(() => undefined, (err: unknown) => {
    done = null;
    throw err;
  }));
}
