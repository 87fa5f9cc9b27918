import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { ServiceError } from '../../errors.js';
import type { AdoptedUploads, StagedUploads } from '../../sandbox/uploads.js';
import type { Workspaces } from '../../sandbox/workspaces.js';
import { FINISHED_STATUSES, isLive, LIVE_STATUSES } from '../../store/store.js';
import type { ApprovalOutcome, AttachedFile, EventRecord, MessageRecord, Store, TaskListQuery, TaskRecord, TaskStatus } from '../../store/store.js';
import type { ApprovalGate } from '../approvals/approvalGate.js';
import type { InputAction, InputRequests } from '../approvals/inputRequests.js';
import { principalId } from '../security/principal.js';
import { pushUser, userText } from '../runs/conversation.js';
import { readEvents } from '../events/events.js';
import { historyMessages } from './history.js';
import { SAMPLING_TOOL_NAME } from '../approvals/sampling.js';
import type { EventLog } from '../events/events.js';
import type { Principal } from '../security/principal.js';
import { Scrubber } from '../security/scrubber.js';
import type { SessionRegistry } from '../runs/sessions.js';
import { RunAbort } from '../approvals/runAbort.js';
import type { TaskRunner } from '../runs/taskRunner.js';
import type { TaskQueue } from './taskQueue.js';
import { foldEvents } from '../runs/turnState.js';
import type { TurnState } from '../runs/turnState.js';

/** A validated request to create a task. */
export interface CreateTaskInput {
  message: string;
  systemPrompt: string | null;
  showInHistory: boolean;
  autoExecute: boolean;
  env: Record<string, string> | null;
  secrets: Record<string, string> | null;
  /** Checked uploads, moved into the workspace's `uploads/` before the task is stored. */
  uploads?: StagedUploads;
}

/** A validated follow-up. */
export interface FollowUpInput {
  message: string;
  env: Record<string, string> | null;
  secrets: Record<string, string> | null;
  /** Checked uploads, moved into the workspace's `uploads/` before the follow-up is stored. */
  uploads?: StagedUploads;
}

/** A task as GET /tasks/:id returns it. */
export interface TaskView extends Omit<TaskRecord, 'runStartSeq' | 'secretKeys' | 'error'> {
  /** Why the task failed, as the hosted API shows it: the message, or null. */
  error: string | null;
  /** The code of `error` (EXECUTION_ERROR), or null. */
  errorCode: string | null;
  output?: { content: string; updatedAt: string; thoughts?: TurnState['thoughts']; toolCalls?: TurnState['toolCalls'] };
  pendingApprovals?: { callId: string; toolName: string; server?: string; tool?: string; args: Record<string, unknown>; requestedAt: string }[];
  /** MCP servers' input requests waiting for an answer: each `input_required` payload with `requestedAt`. */
  pendingInputs?: Record<string, unknown>[];
  /** GET one only: bytes of the files in the task's workspace. */
  workspaceBytes?: number;
}

export interface TaskServiceOptions {
  store: Store;
  events: EventLog;
  queue: TaskQueue;
  runner: TaskRunner;
  sessions: SessionRegistry;
  gate: ApprovalGate;
  inputs: InputRequests;
  workspaces: Workspaces;
  logger: Logger;
  /** How long a cancel waits for the run to wind down before it records the cancel itself. */
  cancelWaitMs?: number;
}

/** The task API's operations, independent of HTTP. Every method checks the caller may see the task. */
export class TaskService {
  /** Runs queued or executing in this process. */
  private readonly runs = new Map<string, Run>();
  private accepting = true;

  constructor(private readonly options: TaskServiceOptions) {}

  async create(principal: Principal, input: CreateTaskInput): Promise<{ id: string; status: TaskStatus; username: string | null }> {
    this.assertAccepting();
    const { store } = this.options;
    const now = new Date().toISOString();
    const id = randomUUID();
    const adopted = input.uploads && (await this.options.workspaces.adopt(id, input.uploads));
    const attachedFiles = adopted?.attachedFiles;
    // A session holds what lives only in memory: secrets, and the model's unscrubbed view of what
    // they are in. A task without secrets waits in the queue without one: its run opens the session
    // and reads the conversation from the store, which is then the same. A backlog of queued tasks
    // thus costs little memory.
    const secrets = input.secrets ?? {};
    const session = Object.keys(secrets).length ? this.options.sessions.open(id) : undefined;
    session?.addSecrets(secrets);
    const scrub = session?.scrubber ?? Scrubber.NONE;
    const sessionId = session?.sessionId ?? randomUUID();
    const task: TaskRecord = {
      id,
      projectId: principal.projectId,
      apiKeyId: principal.kind === 'apiKey' ? principal.apiKeyId : null,
      endUserId: principal.kind === 'endUser' ? principal.endUserId : null,
      username: principal.kind === 'apiKey' ? principal.keyName : principal.endUserId,
      sessionId,
      conversationId: randomUUID(),
      status: 'pending',
      message: scrub.text(input.message),
      systemPrompt: input.systemPrompt === null ? null : scrub.text(input.systemPrompt),
      showInHistory: input.showInHistory,
      autoExecute: input.autoExecute,
      env: input.env && scrub.value(input.env),
      error: null,
      usage: { inputTokens: 0, outputTokens: 0, turns: 0 },
      createdAt: now,
      startedAt: null,
      completedAt: null,
      lastActivityAt: now,
      messageCount: 0,
      runStartSeq: 0,
      secretKeys: Object.keys(secrets),
    };
    try {
      // One atomic write: a task is never stored without its message, and the 201 waits for the commit.
      await store.createTask(task, userMessage(scrub, input.message, attachedFiles, now));
    } catch (err) {
      if (session) await this.options.sessions.close(id);
      if (adopted) await this.options.workspaces.remove(id);
      throw err;
    }
    // The model sees the unscrubbed message; only what is stored is scrubbed.
    if (session) session.conversation = [{ role: 'user', content: [{ type: 'text', text: userText(input.message, attachedFiles) }] }];
    this.schedule(task.id, 'start', sessionId);
    return { id, status: 'pending', username: task.username };
  }

  async followUp(principal: Principal, taskId: string, input: FollowUpInput): Promise<{ status: TaskStatus }> {
    this.assertAccepting();
    const { store } = this.options;
    const task = await this.followUpTarget(principal, taskId);
    // Exclusive with the retention sweep: it must not delete the workspace while uploads move in
    // or a run is about to start in it.
    return this.options.workspaces.exclusive(taskId, async () => {
      const adopted: AdoptedUploads | undefined = input.uploads && (await this.options.workspaces.adopt(taskId, input.uploads));
      const session = this.options.sessions.open(taskId);
      // Tools are opened per run (closed when a run ends), so new values reach MCP templates next run.
      session.addSecrets(input.secrets ?? {});
      // Scrubbed before it is written: an env value may contain a secret's value.
      const env = input.env ? session.scrubber.value({ ...(task.env ?? {}), ...input.env }) : task.env;
      const secretKeys = [...new Set([...task.secretKeys, ...Object.keys(input.secrets ?? {})])];
      const moved = await store.transitionTask(taskId, FINISHED_STATUSES, { status: 'running', error: null, completedAt: null, env, secretKeys });
      if (!moved) {
        this.options.sessions.idle(taskId);
        await adopted?.undo();
        throw new ServiceError('CONFLICT', 'The task is busy; send a follow-up when it has finished');
      }
      const now = new Date().toISOString();
      const message = await store.appendMessage({ ...userMessage(session.scrubber, input.message, adopted?.attachedFiles, now), taskId });
      await store.updateTask(taskId, { runStartSeq: message.afterSeq });
      if (session.conversation) pushUser(session.conversation, [{ type: 'text', text: userText(input.message, adopted?.attachedFiles) }]);
      this.schedule(taskId);
      return { status: 'running' as const };
    });
  }

  /** The task, if the caller may send it a follow-up now: NOT_FOUND or CONFLICT otherwise. */
  async followUpTarget(principal: Principal, taskId: string): Promise<TaskRecord> {
    const task = await this.visibleTask(principal, taskId);
    if (isLive(task.status)) throw new ServiceError('CONFLICT', `The task is ${task.status}; send a follow-up when it has finished`);
    return task;
  }

  async cancel(principal: Principal, taskId: string): Promise<void> {
    const { store } = this.options;
    const task = await this.visibleTask(principal, taskId);
    if (task.status === 'cancelled') return;
    if (task.status === 'completed' || task.status === 'failed') throw new ServiceError('CONFLICT', `The task has already ${task.status === 'completed' ? 'completed' : 'failed'}`);
    const run = this.runs.get(taskId);
    if (run && this.options.queue.remove(taskId)) {
      this.runs.delete(taskId);
      run.finish();
      this.options.sessions.idle(taskId);
    } else if (run) {
      run.controller?.abort(new RunAbort('cancel'));
      if (await within(run.done, this.options.cancelWaitMs ?? 5_000)) return;
    }
    // Not running (queued, or the run did not wind down in time): record the cancel here.
    const moved = await store.transitionTask(taskId, LIVE_STATUSES, { status: 'cancelled', completedAt: new Date().toISOString() });
    if (moved) {
      // A task suspended by a restart has no run to answer its waiting calls.
      await this.stopWaiting(taskId, 'Task cancelled');
      await this.options.events.append(taskId, 'status', { status: 'cancelled' });
      await this.options.events.append(taskId, 'error', { code: 'CANCELLED', message: 'Task cancelled' });
    }
  }

  /** Decides a pending tool call (POST /tasks/:id/tools/:callId/approve). */
  async approve(principal: Principal, taskId: string, callId: string, answer: { outcome: ApprovalOutcome; reason?: string; args?: Record<string, unknown> }): Promise<{ approved: boolean }> {
    await this.visibleTask(principal, taskId);
    const { delivered } = await this.options.gate.decide(taskId, callId, answer, principalId(principal));
    if (!delivered) await this.resumeWhenDecided(taskId);
    return { approved: answer.outcome !== 'cancel' };
  }

  /** Answers an MCP server's pending input request (POST /tasks/:id/inputs/:requestId). */
  async answerInput(principal: Principal, taskId: string, requestId: string, answer: { action: InputAction; content?: Record<string, unknown> }): Promise<{ requestId: string; action: InputAction }> {
    await this.visibleTask(principal, taskId);
    return this.options.inputs.answer(taskId, requestId, answer, principalId(principal));
  }

  /** The audit trail of a task's approvals (GET /tasks/:id/approvals). */
  async approvals(principal: Principal, taskId: string) {
    await this.visibleTask(principal, taskId);
    const approvals = await this.options.store.listApprovals(taskId);
    return approvals.map(({ taskId: _taskId, inputSchema: _inputSchema, ...rest }) => rest);
  }

  async get(principal: Principal, taskId: string): Promise<TaskView> {
    const task = await this.visibleTask(principal, taskId);
    const view: TaskView = { ...publicTask(task), workspaceBytes: await this.options.workspaces.usage(taskId) };
    if (task.status === 'awaiting_approval') {
      const pending = (await this.options.store.listApprovals(taskId)).filter((a) => a.status === 'pending');
      if (pending.length) view.pendingApprovals = pending.map((a) => ({ callId: a.callId, toolName: a.toolName, args: a.args, server: a.server, tool: a.tool, requestedAt: a.requestedAt }));
    }
    if (task.status !== 'pending' || task.startedAt) {
      const state = foldEvents(await readEvents(this.options.store, taskId, task.runStartSeq));
      if (task.status === 'awaiting_approval' && state.pendingInputs.length) view.pendingInputs = state.pendingInputs.map((input) => ({ ...input.request, requestedAt: input.requestedAt }));
      view.output = {
        content: state.content,
        updatedAt: state.updatedAt ?? task.lastActivityAt,
        ...(state.thoughts.length ? { thoughts: state.thoughts } : {}),
        ...(state.toolCalls.length ? { toolCalls: state.toolCalls } : {}),
      };
    }
    return view;
  }

  /**
   * A page of the caller's tasks: a key's own (or, with scope project, the project's), an end
   * user's own; an end user never sees the project scope.
   */
  async list(principal: Principal, query: Omit<TaskListQuery, 'projectId' | 'apiKeyId' | 'endUserId'> & { scope: 'own' | 'project' }) {
    const { scope, offset, ...rest } = query;
    if (principal.kind === 'endUser' && scope === 'project') {
      throw new ServiceError('FORBIDDEN', 'An end user lists only their own tasks: scope=project needs an API key');
    }
    const owner = principal.kind === 'endUser' ? { endUserId: principal.endUserId } : scope === 'own' ? { apiKeyId: principal.apiKeyId } : {};
    // A cursor's offset only counts what the walk listed before: the position is where it goes on.
    const { tasks, total, next } = await this.options.store.listTasks({ projectId: principal.projectId, ...owner, ...rest, offset: rest.after ? 0 : offset });
    return { tasks: tasks.map(publicTask), total, next };
  }

  async history(principal: Principal, taskId: string) {
    const task = await this.visibleTask(principal, taskId);
    const messages = await this.options.store.listMessages(taskId);
    return { taskId, conversationId: task.conversationId, status: task.status, messages: historyMessages(messages, isLive(task.status)) };
  }

  /** The task if the caller may see it; NOT_FOUND otherwise, so other projects' ids never leak. */
  /** The scrubber of a task's live secrets (none when its session is gone), for what is logged about a request on it. */
  scrubberOf(taskId: string): Scrubber {
    return this.options.sessions.get(taskId)?.scrubber ?? Scrubber.NONE;
  }

  async visibleTask(principal: Principal, taskId: string): Promise<TaskRecord> {
    const task = await this.options.store.getTask(taskId);
    const visible = task && task.projectId === principal.projectId && (principal.kind === 'apiKey' || task.endUserId === principal.endUserId);
    if (!visible) throw new ServiceError('NOT_FOUND', 'Task not found');
    return task;
  }

  /**
   * Takes over what a previous process left: a task waiting for approval stays waiting (its approvals
   * are in the store; their expiry is re-armed, and a task whose approvals were all decided resumes
   * now); a task that was running is failed, since its in-flight calls and secrets are gone.
   */
  async recoverInterrupted(): Promise<{ failed: number; waiting: number }> {
    const { store, gate } = this.options;
    const left = await store.findTasksByStatus(LIVE_STATUSES);
    let waiting = 0;
    for (const task of left) {
      if (task.status !== 'awaiting_approval') {
        await this.interrupt(task.id, 'Airlock restarted while this task was running; send a follow-up to continue');
        continue;
      }
      waiting++;
      await this.endServerRequests(task);
      for (const approval of await store.listApprovals(task.id)) gate.armExpiry(approval, () => void this.resumeWhenDecided(task.id));
      await this.resumeWhenDecided(task.id);
    }
    return { failed: left.length - waiting, waiting };
  }

  // An MCP server's requests (input, sampling) ended with the connection of the process that got
  // them: a task suspended while one waited gets them closed, so nothing waits for an answer that
  // could not be delivered. Its tool-call approvals stay pending.
  private async endServerRequests(task: TaskRecord): Promise<void> {
    const { store, gate, events } = this.options;
    const reason = 'Airlock restarted; the MCP server\'s request ended with its connection';
    const state = foldEvents(await readEvents(store, task.id, task.runStartSeq));
    for (const input of state.pendingInputs) {
      await events.append(task.id, 'input_resolved', { requestId: input.request.requestId, action: 'cancel', reason, answeredBy: 'system' });
    }
    for (const approval of await store.listApprovals(task.id)) {
      if (approval.status !== 'pending' || approval.toolName !== SAMPLING_TOOL_NAME || !(await gate.cancel(task.id, approval.callId, reason))) continue;
      if (state.callStatuses.get(approval.callId) === 'awaiting_approval' && !state.toolCalls.some((c) => c.callId === approval.callId && c.output !== undefined)) {
        await events.append(task.id, 'tool_result', { callId: approval.callId, status: 'cancelled', output: 'The sampling request stopped before it was approved; the model was not asked.', approvalId: approval.id });
      }
    }
  }

  // Resumes a suspended task (no run of this process) once none of its approvals is pending.
  private async resumeWhenDecided(taskId: string): Promise<void> {
    if (this.runs.has(taskId) || !this.accepting) return;
    if ((await this.options.store.getTask(taskId))?.status !== 'awaiting_approval') return;
    if ((await this.options.store.listApprovals(taskId)).some((a) => a.status === 'pending')) return;
    if (this.runs.has(taskId)) return; // a concurrent decision got here first
    this.schedule(taskId, 'resume');
  }

  private async interrupt(taskId: string, message: string): Promise<void> {
    const error = { code: 'EXECUTION_ERROR', message };
    if (await this.options.store.transitionTask(taskId, LIVE_STATUSES, { status: 'failed', completedAt: new Date().toISOString(), error })) {
      await this.stopWaiting(taskId, message);
      await this.options.events.append(taskId, 'status', { status: 'failed' });
      await this.options.events.append(taskId, 'error', error);
    }
  }

  // Closes the pending approvals of a task no run is waiting on, and shows each call as not run.
  private async stopWaiting(taskId: string, reason: string): Promise<void> {
    for (const approval of await this.options.gate.closeAll(taskId, reason)) {
      await this.options.events.append(taskId, 'tool_result', { callId: approval.callId, status: 'cancelled', output: 'The task stopped before this call was approved; it did not run.', approvalId: approval.id });
    }
  }

  /**
   * Stops taking work, lets running tasks go on for `graceMs`, then cancels the rest as
   * interrupted by the shutdown; closes every session.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.accepting = false;
    // Queued runs will not start: record them as interrupted now, so their streams end. All at
    // once: their writes share group commits, and a backlog of thousands is written in moments.
    const queued = [...this.runs].filter(([taskId]) => this.options.queue.remove(taskId));
    for (const [taskId, run] of queued) {
      this.runs.delete(taskId);
      run.finish();
    }
    await Promise.all(queued.map(([taskId]) => this.interrupt(taskId, 'Airlock shut down before this task started; send a follow-up to run it')));
    // Nobody can approve once the server stops accepting requests: waiting runs are suspended now
    // rather than hold the grace period. Their approvals stay pending, for the next start to resume.
    this.options.gate.stop();
    for (const [taskId, run] of this.runs) {
      if ((await this.options.store.getTask(taskId))?.status === 'awaiting_approval') run.controller?.abort(new RunAbort('suspend'));
    }
    const all = () => Promise.allSettled([...this.runs.values()].map((run) => run.done));
    if (!(await within(all(), graceMs))) {
      for (const run of this.runs.values()) run.controller?.abort(new RunAbort('shutdown'));
      await all();
    }
    await this.options.sessions.closeAll();
  }

  /** Runs of this process, for metrics and tests. */
  get activeRuns(): number {
    return this.runs.size;
  }

  /** Queues a run; `sessionId` names the session the run opens when the task has none yet. */
  private schedule(taskId: string, mode: 'start' | 'resume' = 'start', sessionId?: string): void {
    const run = new Run();
    this.runs.set(taskId, run);
    this.options.queue.enqueue(taskId, async () => {
      const controller = (run.controller = new AbortController());
      try {
        const session = this.options.sessions.open(taskId, sessionId);
        await this.options.runner.run(taskId, session, controller.signal, mode);
      } catch (err) {
        (this.options.sessions.get(taskId)?.log ?? this.options.logger).error({ taskId, err }, 'task run crashed');
      } finally {
        this.runs.delete(taskId);
        this.options.sessions.idle(taskId);
        this.options.workspaces.forgetUsage(taskId);
        run.finish();
      }
    });
  }

  private assertAccepting(): void {
    if (!this.accepting) throw new ServiceError('CONFLICT', 'Airlock is shutting down and takes no new work');
  }
}

/** A user's message as stored: scrubbed (the model sees it unscrubbed). */
function userMessage(scrubber: Scrubber, content: string, attachedFiles: AttachedFile[] | undefined, createdAt: string): Omit<MessageRecord, 'taskId' | 'afterSeq'> {
  return {
    id: randomUUID(), role: 'user', content: scrubber.text(content), createdAt,
    // Names came from the client: scrubbed like the text, in case one holds a secret's value.
    ...(attachedFiles?.length ? { attachedFiles: scrubber.value(attachedFiles) } : {}),
  };
}

/** The task fields the API shows. */
export function publicTask(task: TaskRecord): TaskView {
  const { runStartSeq: _runStartSeq, secretKeys: _secretKeys, ...rest } = task;
  // `error` keeps its place among the fields (overriding a key keeps its position); `errorCode` comes last.
  return { ...rest, error: rest.error?.message ?? null, errorCode: rest.error?.code ?? null };
}

/** Whether `promise` settled within `ms`. The timer is ref'd on purpose: a shutdown waiting on it must keep the process alive. */
function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.finally(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * A run of this process, queued or executing. Plain fields, no closures: a burst of creates can
 * queue tens of thousands of these.
 */
class Run {
  /** Made when the run starts: a queued run is stopped by taking it out of the queue. */
  controller: AbortController | null = null;
  private ended = false;
  private waiters: (() => void)[] | null = null;

  /** Resolves once the run has ended (or was taken out of the queue). */
  get done(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => (this.waiters ??= []).push(resolve));
  }

  finish(): void {
    this.ended = true;
    const waiters = this.waiters;
    this.waiters = null;
    for (const resolve of waiters ?? []) resolve();
  }
}
