import { randomUUID } from 'node:crypto';
import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/client';
import type { CreateMessageRequestParams, CreateMessageResult, ElicitRequestFormParams, ElicitRequestURLParams, ElicitResult } from '@modelcontextprotocol/client';
import type { ProjectConfig } from '../../config.js';
import { describeError } from '../../errors.js';
import type { ServerRequestContext, ServerRequestHandler } from '../../mcp/serverRequests.js';
import { completeTurn } from '../../model/modelClient.js';
import type { ModelClient } from '../../model/modelClient.js';
import type { TaskRecord } from '../../store/store.js';
import type { ApprovalAnswer, ApprovalGate } from '../approvals/approvalGate.js';
import { decideSampling } from '../approvals/approvalPolicy.js';
import type { InputPrompt, InputRequests } from '../approvals/inputRequests.js';
import { SAMPLING_ARGS_SCHEMA, SAMPLING_METHOD, SAMPLING_REJECTED_CODE, SAMPLING_TOOL_NAME, samplingArgs, samplingConversation, samplingResult } from '../approvals/sampling.js';
import type { SamplingArgs } from '../approvals/sampling.js';
import type { TaskSession } from './sessions.js';
import { capText, EVENT_OUTPUT_LIMIT_CHARS } from './toolCalls.js';
import type { EmitEvent } from '../events/events.js';
import type { TurnContext } from './toolCalls.js';
import type { UsageMeter } from './usageMeter.js';

export interface TaskServerRequestsOptions {
  task: TaskRecord;
  project: ProjectConfig;
  session: TaskSession;
  /** The run's signal: aborting it (cancel, shutdown) answers every pending request. */
  signal: AbortSignal;
  emit: EmitEvent;
  /** The run's awaiting_approval counter, shared with its tool calls. */
  waiting: TurnContext['waiting'];
  gate: ApprovalGate;
  inputs: InputRequests;
  /** The task's model: it answers sampling requests. */
  model: ModelClient;
  usage: UsageMeter;
}

/**
 * Answers, for one run of a task, what its MCP servers ask while they serve its tool calls.
 * Elicitation becomes a pending input request a person answers (the task is awaiting_approval
 * meanwhile); sampling goes through the approval gate (project `samplingPolicies`, else the task's
 * autoExecute) and is answered by the task's model, its tokens counted in the task's usage.
 */
export class TaskServerRequests implements ServerRequestHandler {
  constructor(private readonly options: TaskServerRequestsOptions) {}

  async elicit(params: ElicitRequestFormParams | ElicitRequestURLParams, context: ServerRequestContext): Promise<ElicitResult> {
    const { task, project, emit, waiting, inputs } = this.options;
    // A 2025-era form request may leave `mode` out.
    const prompt: InputPrompt = params.mode === 'url'
      ? { mode: 'url', message: params.message, url: params.url, ...(params.elicitationId ? { elicitationId: params.elicitationId } : {}) }
      : { mode: 'form', message: params.message, schema: params.requestedSchema as Record<string, unknown> };
    await waiting.enter();
    try {
      const answer = await inputs.open({
        taskId: task.id, server: context.server, ...(context.callId ? { callId: context.callId } : {}), prompt, emit,
        signal: AbortSignal.any([context.signal, this.options.signal]),
        ...(project.approvalTimeoutMs ? { timeoutMs: project.approvalTimeoutMs } : {}),
      });
      return answer.content ? { action: answer.action, content: answer.content as ElicitResult['content'] } : { action: answer.action };
    } finally {
      await waiting.leave();
    }
  }

  async createMessage(params: CreateMessageRequestParams, context: ServerRequestContext): Promise<CreateMessageResult> {
    const { task, project, session, emit, model, usage } = this.options;
    let args = samplingArgs(params);
    const callId = `smp_${randomUUID().replace(/-/g, '')}`;
    const signal = AbortSignal.any([context.signal, this.options.signal]);
    const base = { callId, toolName: SAMPLING_TOOL_NAME, server: context.server, args, ...(context.callId ? { parentCallId: context.callId } : {}) };
    const alwaysKey = `sampling:${context.server}`;
    const verdict = session.alwaysAllowed.has(alwaysKey) ? { decision: 'allow' as const } : decideSampling(project, context.server, task.autoExecute);
    let approvalId: string | undefined;
    switch (verdict.decision) {
      case 'deny': {
        const text = `The sampling request was denied by policy${verdict.reason ? `: ${verdict.reason}` : ''}.`;
        await emit('tool_call', { ...base, status: 'error' });
        await emit('tool_result', { callId, status: 'error', output: text });
        throw new ProtocolError(SAMPLING_REJECTED_CODE, text);
      }
      case 'ask': {
        const decided = await this.approve(base, args, signal, verdict.reason);
        approvalId = decided.approvalId;
        if (decided.answer.outcome === 'cancel') {
          const text = decided.answer.expired
            ? 'Nobody approved this sampling request in time.'
            : `The user declined this sampling request${decided.answer.reason ? `: ${decided.answer.reason}` : ''}.`;
          await emit('tool_result', { callId, status: 'cancelled', output: text, approvalId });
          throw new ProtocolError(SAMPLING_REJECTED_CODE, text);
        }
        if (decided.answer.outcome === 'proceed_always') session.alwaysAllowed.add(alwaysKey);
        if (decided.answer.args) args = decided.answer.args as unknown as SamplingArgs;
        break;
      }
      case 'allow':
        break;
    }

    const withApproval = approvalId ? { approvalId } : {};
    await emit('tool_call', { ...base, args, status: 'executing', ...withApproval });
    let turn;
    try {
      turn = await completeTurn(model, { system: args.systemPrompt ?? '', messages: samplingConversation(args), tools: [], signal, maxTokens: args.maxTokens });
    } catch (err) {
      if (signal.aborted) {
        await emit('tool_result', { callId, status: 'cancelled', output: 'The sampling request was cancelled.', ...withApproval });
        throw err;
      }
      const text = session.scrubber.text(`The model failed to answer the sampling request: ${describeError(err)}`);
      await emit('tool_result', { callId, status: 'error', output: text, ...withApproval });
      throw new ProtocolError(ProtocolErrorCode.InternalError, text);
    }
    await usage.add(turn.usage);
    const result = samplingResult(turn, model.description);
    await emit('tool_result', { callId, status: 'success', output: capText(result.content.type === 'text' ? result.content.text : '', EVENT_OUTPUT_LIMIT_CHARS), ...withApproval });
    return result;
  }

  // A sampling request that waits for a person, exactly as a tool call does (pendingApprovals, approve route).
  private async approve(base: { callId: string; toolName: string; server: string; args: SamplingArgs }, args: SamplingArgs, signal: AbortSignal, policy: string | undefined): Promise<{ approvalId: string; answer: ApprovalAnswer }> {
    const { task, project, session, emit, waiting, gate } = this.options;
    const { record, answer } = await gate.request({
      taskId: task.id, callId: base.callId, toolName: SAMPLING_TOOL_NAME,
      info: { server: base.server, tool: SAMPLING_METHOD, inputSchema: SAMPLING_ARGS_SCHEMA },
      args: args as unknown as Record<string, unknown>, scrubber: session.scrubber, signal,
      ...(policy ? { policy } : {}),
      ...(project.approvalTimeoutMs ? { timeoutMs: project.approvalTimeoutMs } : {}),
    });
    // Committed with the task's awaiting_approval, as a tool call's is (see ToolCalls.run).
    await Promise.all([waiting.enter(), emit('tool_call', { ...base, status: 'awaiting_approval', approvalId: record.id })]);
    try {
      return { approvalId: record.id, answer: await answer };
    } catch (err) {
      await emit('tool_result', { callId: base.callId, status: 'cancelled', output: 'The sampling request stopped before it was approved; the model was not asked.', approvalId: record.id });
      throw err;
    } finally {
      await waiting.leave();
    }
  }
}
