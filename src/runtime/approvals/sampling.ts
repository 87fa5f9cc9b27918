import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/client';
import type { CreateMessageRequestParams, CreateMessageResult } from '@modelcontextprotocol/client';
import type { ModelMessage, ModelStreamEvent, StopReason } from '../../model/modelClient.js';

/** The name a sampling request goes by on the stream, in `output.toolCalls` and in approvals. */
export const SAMPLING_TOOL_NAME = 'sampling';
/** The "tool" of a sampling request's approval: the MCP method. */
export const SAMPLING_METHOD = 'sampling/createMessage';
/**
 * The MCP error code of a sampling request refused by policy or by a person: the spec's example of
 * a user rejection.
 */
export const SAMPLING_REJECTED_CODE = -1;

/** A sampling request as a person sees it in an approval and may edit it: text only. */
export interface SamplingArgs {
  messages: { role: 'user' | 'assistant'; content: { type: 'text'; text: string } }[];
  systemPrompt?: string;
  maxTokens: number;
}

/** What edited `args` of a sampling approval must look like. */
export const SAMPLING_ARGS_SCHEMA: Record<string, unknown> = {
  type: 'object',
  additionalProperties: false,
  required: ['messages', 'maxTokens'],
  properties: {
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['role', 'content'],
        properties: {
          role: { enum: ['user', 'assistant'] },
          content: {
            type: 'object',
            additionalProperties: false,
            required: ['type', 'text'],
            properties: { type: { const: 'text' }, text: { type: 'string' } },
          },
        },
      },
    },
    systemPrompt: { type: 'string' },
    maxTokens: { type: 'integer', minimum: 1 },
  },
};

/**
 * The part of a sampling request Airlock acts on. Only text is supported: a request with image or
 * audio content, or with tools, is refused as invalid params. Model preferences, temperature, stop
 * sequences and `includeContext` are not used.
 */
export function samplingArgs(params: CreateMessageRequestParams): SamplingArgs {
  if (params.tools?.length) throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'Airlock does not offer tools in sampling requests');
  const messages = params.messages.map((message, index) => {
    const blocks = Array.isArray(message.content) ? message.content : [message.content];
    const texts = blocks.map((block) => {
      if (block.type !== 'text') throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Airlock answers sampling requests with text content only; message ${index} has ${block.type} content`);
      return block.text;
    });
    return { role: message.role, content: { type: 'text' as const, text: texts.join('\n\n') } };
  });
  return { messages, ...(params.systemPrompt ? { systemPrompt: params.systemPrompt } : {}), maxTokens: params.maxTokens };
}

/** The conversation the model gets for a sampling request. */
export function samplingConversation(args: SamplingArgs): ModelMessage[] {
  return args.messages.map((message) => ({ role: message.role, content: [{ type: 'text', text: message.content.text }] }));
}

/** The sampling result the server gets from one model turn. */
export function samplingResult(turn: Extract<ModelStreamEvent, { type: 'turn_end' }>, model: string): CreateMessageResult {
  const text = turn.content.flatMap((block) => (block.type === 'text' ? [block.text] : [])).join('');
  return { role: 'assistant', content: { type: 'text', text }, model, stopReason: stopReasonOf(turn.stopReason) };
}

function stopReasonOf(reason: StopReason): string {
  switch (reason) {
    case 'end_turn':
      return 'endTurn';
    case 'max_tokens':
      return 'maxTokens';
    case 'stop_sequence':
      return 'stopSequence';
    case 'tool_use':
      return 'toolUse';
    case 'refusal':
    case 'pause_turn':
      return reason;
  }
}
