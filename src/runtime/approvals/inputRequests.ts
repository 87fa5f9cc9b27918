import { randomUUID } from 'node:crypto';
import { ServiceError } from '../../errors.js';
import type { Store } from '../../store/store.js';
import { SchemaCheck } from './schemaCheck.js';
import type { SchemaProblem } from './schemaCheck.js';
import type { EmitEvent } from '../events/events.js';

/** How a person answers a server's request for input (MCP elicitation actions). */
export type InputAction = 'accept' | 'decline' | 'cancel';

/** What a server asks a person for: data matching a schema, or to open a URL. */
export type InputPrompt =
  | { mode: 'form'; message: string; schema: Record<string, unknown> }
  | { mode: 'url'; message: string; url: string; elicitationId?: string };

/** The answer that goes back to the server. */
export interface InputAnswer {
  action: InputAction;
  /** With `accept` in form mode: the content, checked against the schema, defaults filled in. */
  content?: Record<string, unknown>;
}

/** One request to put before a person. */
export interface OpenInputRequest {
  taskId: string;
  server: string;
  /** The tool call the server was serving, when known. */
  callId?: string;
  prompt: InputPrompt;
  /** Expires (answered `cancel`, reason `expired`) after this long. */
  timeoutMs?: number;
  /** Aborting answers `cancel`: the task stopped, the call ended, or the server withdrew the request. */
  signal: AbortSignal;
  /** Where the request's events go (the run's emitter, which scrubs secrets). */
  emit: EmitEvent;
}

interface Waiter {
  prompt: InputPrompt;
  emit: EmitEvent;
  /** Settles the request for good; called once, by whoever claimed it. */
  settle(answer: InputAnswer, by: string, reason?: string): Promise<void>;
}

const EVENT_PAGE = 1_000;

/**
 * The input requests MCP servers make of a person while they serve a task's tool calls
 * (elicitation, and the 2026-07-28 `input_required` round trip). Each is announced as an
 * `input_required` event and answered exactly once: by a person (`answer`), by its expiry, or
 * with `cancel` when whatever it waited on stops. Claiming a waiter is synchronous, so of two
 * concurrent answers exactly one gets it.
 */
export class InputRequests {
  private readonly waiters = new Map<string, Waiter>();
  /** Requests claimed whose `input_resolved` event is not stored yet. */
  private readonly settling = new Map<string, InputAction>();
  private readonly schemas = new SchemaCheck({ useDefaults: true });

  constructor(private readonly store: Store) {}

  /** Announces the request and resolves with its answer; never rejects. */
  open(request: OpenInputRequest): Promise<InputAnswer> {
    const requestId = `inp_${randomUUID().replace(/-/g, '')}`;
    const key = waiterKey(request.taskId, requestId);
    const expiresAt = request.timeoutMs ? new Date(Date.now() + request.timeoutMs).toISOString() : undefined;
    return new Promise<InputAnswer>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const release = () => {
        if (timer) clearTimeout(timer);
        request.signal.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        prompt: request.prompt,
        emit: request.emit,
        settle: async (answer, by, reason) => {
          release();
          this.settling.set(key, answer.action);
          try {
            await request.emit('input_resolved', { requestId, action: answer.action, ...(answer.content ? { content: answer.content } : {}), ...(reason ? { reason } : {}), answeredBy: by });
          } finally {
            this.settling.delete(key);
            resolve(answer);
          }
        },
      };
      const systemCancel = (reason: string) => {
        const claimed = this.claim(key);
        if (claimed) void claimed.settle({ action: 'cancel' }, 'system', reason).catch(() => undefined);
      };
      const onAbort = () => systemCancel(describeReason(request.signal.reason));
      this.waiters.set(key, waiter);
      // Announced before anything can settle it, so the stream shows the request before its end.
      void request.emit('input_required', {
        requestId,
        server: request.server,
        ...(request.callId ? { callId: request.callId } : {}),
        ...request.prompt,
        ...(expiresAt ? { expiresAt } : {}),
      }).catch(() => undefined);
      if (request.timeoutMs) {
        timer = setTimeout(() => systemCancel('expired'), request.timeoutMs);
        timer.unref();
      }
      if (request.signal.aborted) onAbort();
      else request.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Answers a pending request for a person (POST /tasks/:id/inputs/:requestId). VALIDATION_ERROR
   * for content the requested schema refuses (the request stays pending), NOT_FOUND for an id
   * this task never had, CONFLICT for one already answered or no longer waited on.
   */
  async answer(taskId: string, requestId: string, answer: { action: InputAction; content?: Record<string, unknown> }, by: string): Promise<{ requestId: string; action: InputAction }> {
    const key = waiterKey(taskId, requestId);
    const waiter = this.waiters.get(key);
    if (!waiter) throw await this.notWaiting(taskId, requestId);
    let content: Record<string, unknown> | undefined;
    if (answer.action === 'accept' && waiter.prompt.mode === 'form') content = this.checkContent(waiter, answer.content ?? {});
    const claimed = this.claim(key);
    if (!claimed) throw await this.notWaiting(taskId, requestId);
    await claimed.settle({ action: answer.action, ...(content ? { content } : {}) }, by);
    return { requestId, action: answer.action };
  }

  private claim(key: string): Waiter | undefined {
    const waiter = this.waiters.get(key);
    if (waiter) this.waiters.delete(key);
    return waiter;
  }

  // Why a request cannot be answered now, from memory or, for earlier runs and other processes, the events.
  private async notWaiting(taskId: string, requestId: string): Promise<ServiceError> {
    const settling = this.settling.get(waiterKey(taskId, requestId));
    if (settling) return new ServiceError('CONFLICT', `The input request was already answered (${settling})`);
    let asked = false;
    for (let cursor = 0; ;) {
      const page = await this.store.listEvents(taskId, cursor, EVENT_PAGE);
      for (const event of page) {
        if (event.data.requestId !== requestId) continue;
        if (event.type === 'input_required') asked = true;
        if (event.type === 'input_resolved') return new ServiceError('CONFLICT', `The input request was already answered (${String(event.data.action)})`);
      }
      if (page.length < EVENT_PAGE) break;
      cursor = page.at(-1)!.seq;
    }
    if (asked) return new ServiceError('CONFLICT', 'The input request is no longer waiting: its task is not running');
    return new ServiceError('NOT_FOUND', 'No input request with that id in this task');
  }

  // The content as the server gets it: a copy, checked against the requested schema, defaults filled in (SEP-1034).
  private checkContent(waiter: Waiter, content: Record<string, unknown>): Record<string, unknown> {
    const prompt = waiter.prompt as Extract<InputPrompt, { mode: 'form' }>;
    const copy = structuredClone(content);
    let details: SchemaProblem[];
    try {
      details = this.schemas.problems(prompt.schema, copy, '/content');
    } catch (err) {
      throw new ServiceError('VALIDATION_ERROR', `The server's schema cannot be used to check the content (${(err as Error).message}); answer decline or cancel`);
    }
    if (!details.length) return copy;
    throw new ServiceError('VALIDATION_ERROR', `The content does not match the requested schema: ${details[0]!.path} ${details[0]!.message}`, { details });
  }
}

function describeReason(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  return reason === undefined ? 'withdrawn' : String(reason);
}

function waiterKey(taskId: string, requestId: string): string {
  return `${taskId}\u0000${requestId}`;
}
