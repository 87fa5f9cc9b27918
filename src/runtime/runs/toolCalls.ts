import type { ProjectConfig } from '../../config.js';
import { describeError } from '../../errors.js';
import type { ContentBlock } from '../../model/modelClient.js';
import type { ApprovalRecord, TaskRecord, ToolCallRecord } from '../../store/store.js';
import type { ApprovalAnswer, ApprovalGate } from '../approvals/approvalGate.js';
import { decide } from '../approvals/approvalPolicy.js';
import { toolResultText } from './conversation.js';
import type { EmitEvent, EventType } from '../events/events.js';
import { ProgressCoalescer } from '../tools/progressCoalescer.js';
import { isSuspended } from '../approvals/runAbort.js';
import type { TaskSession } from './sessions.js';
import type { UnfinishedCall } from './turnState.js';
import type { ToolResult } from '../tools/toolRouter.js';

/** The most of a tool's output that an event carries; the model gets the whole result. */
export const EVENT_OUTPUT_LIMIT_CHARS = 64 * 1024;

/** The `_meta` key under which an executed call carries the approval that allowed it. */
export const APPROVAL_META_KEY = 'io.airlock/approvalId';

/** Emits one event of the run. */

/** The calls of one model turn: they may all wait for approval at once. */
export interface TurnContext {
  task: TaskRecord;
  project: ProjectConfig;
  session: TaskSession;
  signal: AbortSignal;
  emit: EmitEvent;
  /** Moves the task to awaiting_approval when the first call starts waiting, back when the last is decided. */
  waiting: { enter(): Promise<void>; leave(): Promise<void> };
}

type ToolUse = Extract<ContentBlock, { type: 'tool_use' }>;

/**
 * Runs one tool call through the approval gate (API.md section 7): policy deny never runs and
 * tells the model why; ask records a pending approval and waits for a person; allow (or an
 * approval) executes with the approval id in the MCP request's _meta.
 */
export class ToolCalls {
  constructor(private readonly gate: ApprovalGate) {}

  async run(turn: TurnContext, call: ToolUse): Promise<{ result: ToolResult; record: ToolCallRecord }> {
    const { session, emit, signal } = turn;
    const tools = session.tools!;
    // A tool the session has not listed yet (its list_changed was lost) is listed before the gate
    // decides, so no call reaches a server without passing the policy.
    const info = tools.toolInfo(call.name) ?? (await tools.listTools({ refresh: true }), tools.toolInfo(call.name));
    const server = tools.serverOf(call.name);
    const base = { callId: call.id, toolName: call.name, ...(server ? { server } : {}), args: call.input };
    let args = call.input;
    let approvalId: string | undefined;

    if (info) {
      const verdict = session.alwaysAllowed.has(call.name) ? { decision: 'allow' as const } : decide(turn.project, info, turn.task.autoExecute);
      switch (verdict.decision) {
        case 'deny': {
          const text = `The tool call was denied by policy${verdict.reason ? `: ${verdict.reason}` : ''}. It did not run.`;
          await emit('tool_call', { ...base, status: 'error' });
          return this.finish(turn, base, { content: [{ type: 'text', text }], isError: true }, 'error');
        }
        case 'ask': {
          const { record, answer } = await this.gate.request({
            taskId: turn.task.id, callId: call.id, toolName: call.name, info, args, scrubber: session.scrubber, signal,
            ...(verdict.reason ? { policy: verdict.reason } : {}),
            ...(turn.project.approvalTimeoutMs ? { timeoutMs: turn.project.approvalTimeoutMs } : {}),
          });
          approvalId = record.id;
          // Issued in one tick, so the task's awaiting_approval and this call's event commit together:
          // a crash must never leave a waiting task whose call the next process cannot find to resume.
          await Promise.all([turn.waiting.enter(), emit('tool_call', { ...base, status: 'awaiting_approval', approvalId })]);
          let decision: ApprovalAnswer;
          try {
            decision = await answer;
          } catch (err) {
            // The task stopped while the call waited: it never ran, and the stream says so (unless the
            // run is only suspended: then the call still waits, for the next process).
            if (!isSuspended(signal)) await emit('tool_result', { callId: call.id, status: 'cancelled', output: 'The task stopped before this call was approved; it did not run.', approvalId });
            throw err;
          } finally {
            await turn.waiting.leave();
          }
          if (decision.outcome === 'cancel') return this.declined(turn, { ...base, approvalId }, decision);
          if (decision.outcome === 'proceed_always') session.alwaysAllowed.add(call.name);
          if (decision.args) args = decision.args;
          break;
        }
        case 'allow':
          break;
      }
    }
    return this.execute(turn, base, args, approvalId);
  }

  /**
   * Completes a call of a turn that a previous process left unfinished (a task resumed after a
   * restart): a result it already has stands; a decided approval is carried out as decided; a call
   * that was executing when the process stopped is reported as of unknown outcome, never re-run.
   */
  async resume(turn: TurnContext, call: UnfinishedCall, approval: ApprovalRecord | undefined): Promise<{ result: ToolResult; record: ToolCallRecord }> {
    const base = { callId: call.callId, toolName: call.toolName, ...(call.server ? { server: call.server } : {}), args: call.args };
    const approvalId = approval?.id ?? call.approvalId;
    if (call.result) {
      const record = { ...base, status: call.result.status, output: call.result.output, ...(approvalId ? { approvalId } : {}) } as ToolCallRecord;
      return { result: { content: [{ type: 'text', text: call.result.output }], isError: call.result.status !== 'success' }, record };
    }
    if (approval?.status === 'approved') {
      if (approval.outcome === 'proceed_always') turn.session.alwaysAllowed.add(call.toolName);
      return this.execute(turn, base, approval.editedArgs ?? call.args, approval.id);
    }
    if (approval && approval.status !== 'pending') {
      return this.declined(turn, { ...base, approvalId: approval.id }, { outcome: 'cancel', ...(approval.reason ? { reason: approval.reason } : {}), expired: approval.status === 'expired' });
    }
    const text = 'Airlock restarted while this call was running; whether it completed is not known. Check its effects before calling it again.';
    return this.finish(turn, { ...base, ...(approvalId ? { approvalId } : {}) }, { content: [{ type: 'text', text }], isError: true }, 'error');
  }

  private declined(turn: TurnContext, base: Omit<ToolCallRecord, 'status' | 'output'> & { approvalId: string }, decision: ApprovalAnswer) {
    const text = decision.expired
      ? 'Nobody approved this tool call in time, so it did not run.'
      : `The user declined this tool call${decision.reason ? `: ${decision.reason}` : ''}. It did not run.`;
    return this.finish(turn, base, { content: [{ type: 'text', text }], isError: true }, 'cancelled');
  }

  // Runs an allowed call, with the approval that allowed it (if any) in the MCP request's _meta.
  private async execute(turn: TurnContext, base: Omit<ToolCallRecord, 'status' | 'output'>, args: Record<string, unknown>, approvalId: string | undefined) {
    const { session, emit, signal } = turn;
    const executed = { ...base, args, ...(approvalId ? { approvalId } : {}) };
    await emit('tool_call', { ...executed, status: 'executing' });
    let result: ToolResult;
    const progress = new ProgressCoalescer((latest) => void emit('tool_progress', { callId: base.callId, ...latest }));
    try {
      result = await session.tools!.callTool({ callId: base.callId, name: base.toolName, args }, {
        signal,
        onProgress: (latest) => progress.offer(latest),
        ...(approvalId ? { meta: { [APPROVAL_META_KEY]: approvalId } } : {}),
      });
    } catch (err) {
      progress.finish();
      if (signal.aborted) {
        await emit('tool_result', { callId: base.callId, status: 'cancelled', output: 'The call was cancelled.' });
        throw err;
      }
      // The seam promises error results, not exceptions; a throw is reported to the model all the same.
      result = { content: [{ type: 'text', text: `Tool failed: ${describeError(err)}` }], isError: true };
    }
    progress.finish();
    if (args !== base.args) result = { ...result, content: [{ type: 'text', text: `(The user changed the arguments before approving: ${JSON.stringify(args)})` }, ...result.content] };
    return this.finish(turn, executed, result, result.isError ? 'error' : 'success');
  }

  private async finish(turn: TurnContext, base: Omit<ToolCallRecord, 'status' | 'output'> & { approvalId?: string }, result: ToolResult, status: ToolCallRecord['status']) {
    const output = capText(turn.session.scrubber.text(toolResultText(result.content)), EVENT_OUTPUT_LIMIT_CHARS);
    await turn.emit('tool_result', { callId: base.callId, status, output, ...(base.approvalId ? { approvalId: base.approvalId } : {}) });
    return { result, record: { ...base, status, output } as ToolCallRecord };
  }
}

export function capText(text: string, limit: number): string {
  if (text.length <= limit) return text;
  return `${text.slice(0, limit)}\n[… ${text.length - limit} more characters not shown]`;
}
