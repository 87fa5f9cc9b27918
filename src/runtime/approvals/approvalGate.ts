import { createHash, randomUUID } from 'node:crypto';
import { ServiceError } from '../../errors.js';
import { canonicalJson } from '../../mcp/mcpPool.js';
import type { ApprovalOutcome, ApprovalRecord, Store } from '../../store/store.js';
import { isSuspended } from './runAbort.js';
import { SchemaCheck } from './schemaCheck.js';
import type { SchemaProblem } from './schemaCheck.js';
import { Scrubber } from '../security/scrubber.js';
import type { ToolInfo } from '../tools/toolRouter.js';

/** A person's answer to a pending approval. */
export interface ApprovalAnswer {
  outcome: ApprovalOutcome;
  reason?: string;
  /** Replacement arguments, already validated against the tool's input schema. */
  args?: Record<string, unknown>;
  /** True when nobody answered in time (the system cancelled it). */
  expired?: boolean;
}

interface Waiter {
  /** The arguments asked about, to tell a real edit from the same arguments sent back. */
  args: Record<string, unknown>;
  scrubber: Scrubber;
  resolve: (answer: ApprovalAnswer) => void;
}

export interface ApprovalRequest {
  taskId: string;
  callId: string;
  toolName: string;
  info: ToolInfo;
  args: Record<string, unknown>;
  scrubber: Scrubber;
  /** Why the gate asked (recorded in the audit trail). */
  policy?: string;
  /** Ends the wait as `cancel` with reason `expired`. */
  timeoutMs?: number;
  /** Aborting cancels the approval and rejects with the signal's reason. */
  signal: AbortSignal;
}

/**
 * The pending decisions of running tasks. An approval is stored before anyone is asked, bound to a
 * digest of server + tool + arguments, and decided exactly once: the store's guarded update is what
 * makes two concurrent approvals of one call run it at most once.
 */
export class ApprovalGate {
  private readonly waiters = new Map<string, Waiter>();
  private readonly schemas = new SchemaCheck();
  /** Expiry timers of approvals recovered from a previous process. */
  private readonly recovered = new Map<string, NodeJS.Timeout>();

  /** `scrubberFor` gives a task's current scrubber, for decisions no run of this process waits for. */
  constructor(private readonly store: Store, private readonly scrubberFor: (taskId: string) => Scrubber = () => Scrubber.NONE) {}

  /** Records a pending approval; `answer` resolves with the decision. */
  async request(request: ApprovalRequest): Promise<{ record: ApprovalRecord; answer: Promise<ApprovalAnswer> }> {
    const now = Date.now();
    const record: ApprovalRecord = {
      id: `apr_${randomUUID().replace(/-/g, '')}`,
      taskId: request.taskId,
      callId: request.callId,
      toolName: request.toolName,
      server: request.info.server,
      tool: request.info.tool,
      args: request.scrubber.value(request.args),
      digest: approvalDigest(request.info.server, request.info.tool, request.args),
      status: 'pending',
      outcome: null,
      reason: null,
      decidedBy: null,
      argsEdited: false,
      editedArgs: null,
      policy: request.policy ?? null,
      requestedAt: new Date(now).toISOString(),
      decidedAt: null,
      expiresAt: request.timeoutMs ? new Date(now + request.timeoutMs).toISOString() : null,
      inputSchema: request.info.inputSchema ?? null,
    };
    const key = waiterKey(request.taskId, request.callId);
    let timer: NodeJS.Timeout | undefined;
    const settle = () => {
      if (timer) clearTimeout(timer);
      request.signal.removeEventListener('abort', onAbort);
      this.waiters.delete(key);
    };
    let onAbort: () => void = () => {};
    // The waiter exists before the approval is stored, so an approve that finds the stored record
    // always finds the run waiting for it too.
    const answer = new Promise<ApprovalAnswer>((resolve, reject) => {
      onAbort = () => {
        settle();
        // A suspended run leaves its approval pending for the next process to resume.
        if (isSuspended(request.signal)) return reject(request.signal.reason);
        const why = request.signal.reason instanceof Error ? request.signal.reason.message : 'the task stopped';
        void this.close(request.taskId, request.callId, 'cancelled', why).finally(() => reject(request.signal.reason));
      };
      this.waiters.set(key, {
        args: request.args,
        scrubber: request.scrubber,
        resolve: (value) => {
          settle();
          resolve(value);
        },
      });
    });
    // The caller awaits the answer only after it has announced the call; a run stopped meanwhile
    // must not count as an unhandled rejection.
    answer.catch(() => undefined);
    try {
      await this.store.createApproval(record);
    } catch (err) {
      settle();
      throw err;
    }
    if (request.timeoutMs) {
      timer = setTimeout(() => void this.expire(request.taskId, request.callId), request.timeoutMs);
      timer.unref();
    }
    if (request.signal.aborted) onAbort();
    else request.signal.addEventListener('abort', onAbort, { once: true });
    return { record, answer };
  }

  /**
   * Decides a pending approval for a caller (POST .../approve). NOT_FOUND for an unknown call,
   * VALIDATION_ERROR for arguments the tool's schema refuses, CONFLICT when already decided.
   * `delivered` is false when no run of this process was waiting: the task was suspended (a restart)
   * and its caller must resume it.
   */
  async decide(taskId: string, callId: string, answer: { outcome: ApprovalOutcome; reason?: string; args?: Record<string, unknown> }, decidedBy: string): Promise<{ record: ApprovalRecord; delivered: boolean }> {
    const record = await this.store.getApproval(taskId, callId);
    if (!record) throw new ServiceError('NOT_FOUND', 'No tool call with that id is waiting for approval in this task');
    if (record.status !== 'pending') throw new ServiceError('CONFLICT', `The tool call was already decided (${record.status})`);
    const waiter = this.waiters.get(waiterKey(taskId, callId));
    if (answer.args && answer.outcome !== 'cancel') this.validate(record.inputSchema ?? undefined, answer.args);
    const approved = answer.outcome !== 'cancel';
    // Without a waiter the stored (scrubbed) arguments are what the edit is compared with.
    const asked = waiter?.args ?? record.args;
    const edited = approved && answer.args !== undefined && canonicalJson(answer.args) !== canonicalJson(asked);
    const scrubber = waiter?.scrubber ?? this.scrubberFor(taskId);
    const decided = await this.store.decideApproval(taskId, callId, {
      status: approved ? 'approved' : 'rejected',
      outcome: answer.outcome,
      reason: answer.reason === undefined ? null : scrubber.text(answer.reason),
      decidedBy,
      argsEdited: edited,
      editedArgs: edited ? scrubber.value(answer.args!) : null,
      decidedAt: new Date().toISOString(),
    });
    if (!decided) throw new ServiceError('CONFLICT', 'The tool call was already decided');
    waiter?.resolve({ outcome: answer.outcome, ...(answer.reason ? { reason: answer.reason } : {}), ...(edited ? { args: answer.args! } : {}) });
    return { record: (await this.store.getApproval(taskId, callId))!, delivered: waiter !== undefined };
  }

  /**
   * Re-arms the expiry of an approval that a previous process left pending; `onExpired` runs once it
   * expired (at once when its time has passed). The timer is unref'd and dropped by `stop`.
   */
  armExpiry(record: ApprovalRecord, onExpired: () => void): void {
    if (!record.expiresAt || record.status !== 'pending') return;
    const key = waiterKey(record.taskId, record.callId);
    const timer = setTimeout(() => {
      this.recovered.delete(key);
      void this.expire(record.taskId, record.callId).then((closed) => closed && onExpired());
    }, Math.max(0, Date.parse(record.expiresAt) - Date.now()));
    timer.unref();
    this.recovered.set(key, timer);
  }

  /** Drops the expiry timers of recovered approvals (shutdown). */
  stop(): void {
    for (const timer of this.recovered.values()) clearTimeout(timer);
    this.recovered.clear();
  }

  // Closes an approval as expired; a run waiting for it is told so.
  private async expire(taskId: string, callId: string): Promise<boolean> {
    const closed = await this.close(taskId, callId, 'expired', 'expired');
    if (closed) this.waiters.get(waiterKey(taskId, callId))?.resolve({ outcome: 'cancel', reason: 'expired', expired: true });
    return closed;
  }

  /** Closes one pending approval as cancelled by the system; false when it was decided already. */
  cancel(taskId: string, callId: string, reason: string): Promise<boolean> {
    return this.close(taskId, callId, 'cancelled', reason);
  }

  /** Closes every pending approval of a task that stopped waiting (cancel, failure); returns those it closed. */
  async closeAll(taskId: string, reason: string): Promise<ApprovalRecord[]> {
    const closed: ApprovalRecord[] = [];
    for (const approval of await this.store.listApprovals(taskId)) {
      if (approval.status === 'pending' && (await this.close(taskId, approval.callId, 'cancelled', reason))) closed.push(approval);
    }
    return closed;
  }

  private close(taskId: string, callId: string, status: 'expired' | 'cancelled', reason: string): Promise<boolean> {
    return this.store.decideApproval(taskId, callId, { status, outcome: 'cancel', reason, decidedBy: 'system', argsEdited: false, editedArgs: null, decidedAt: new Date().toISOString() });
  }

  private validate(schema: Record<string, unknown> | undefined, args: Record<string, unknown>): void {
    if (!schema) return;
    let details: SchemaProblem[];
    try {
      details = this.schemas.problems(schema, args, '/args');
    } catch (err) {
      // Unvalidated edits must not run: refuse them, the call stays pending.
      throw new ServiceError('VALIDATION_ERROR', `The tool's input schema cannot be used to check edited arguments (${(err as Error).message}); approve without args or cancel`);
    }
    if (details.length) throw new ServiceError('VALIDATION_ERROR', `The edited arguments do not match the tool's input schema: ${details[0]!.path} ${details[0]!.message}`, { details });
  }
}

/** What an approval is bound to: server, tool and the exact arguments. */
export function approvalDigest(server: string, tool: string, args: Record<string, unknown>): string {
  return createHash('sha256').update(canonicalJson({ server, tool, args })).digest('hex');
}

function waiterKey(taskId: string, callId: string): string {
  return `${taskId}\u0000${callId}`;
}
