/** A block of a conversation message, provider-neutral. */
export type ContentBlock =
  | { type: 'text'; text: string }
  | { type: 'thinking'; thinking: string; signature?: string }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> }
  | { type: 'tool_result'; toolUseId: string; content: ToolResultBlock[]; isError: boolean };

/** What a tool result may hold when it goes back to the model. */
export type ToolResultBlock =
  | { type: 'text'; text: string }
  | { type: 'image'; data: string; mimeType: string };

/** One message of the conversation the model sees. */
export interface ModelMessage {
  role: 'user' | 'assistant';
  content: ContentBlock[];
}

/** A tool the model may call: the name it sees, and a JSON Schema for its input. */
export interface ToolDefinition {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
}

/** One model turn's input. */
export interface ModelRequest {
  /** The whole system prompt. */
  system: string;
  /** The conversation so far, oldest first; it ends with a user message. */
  messages: ModelMessage[];
  /** Tools the model may call this turn. */
  tools: ToolDefinition[];
  /** Aborts the call: the stream ends by throwing the signal's reason. */
  signal: AbortSignal;
  /** At most this many output tokens (an MCP server's sampling request); the client's own limit still applies. */
  maxTokens?: number;
}

export type StopReason = 'end_turn' | 'tool_use' | 'max_tokens' | 'stop_sequence' | 'refusal' | 'pause_turn';

/** Token counts of one turn, or of a task when summed. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

/** What a model stream yields, in order; the last item is always `turn_end`. */
export type ModelStreamEvent =
  | { type: 'text_delta'; text: string }
  | { type: 'thinking_delta'; thinking: string }
  /** A thinking block is complete; subject/description are what the stream shows as a `thought`. */
  | { type: 'thought'; subject: string; description: string }
  /** The provider refused for a transient reason; the client waits `delayMs` and tries again. */
  | { type: 'retrying'; attempt: number; delayMs: number; reason: string }
  | { type: 'turn_end'; content: ContentBlock[]; stopReason: StopReason; usage: Usage };

/** The seam between the agent loop and a model provider. */
export interface ModelClient {
  /** A short name for logs: provider and model. */
  readonly description: string;
  /** Runs one model turn, streaming deltas; throws ModelError when the provider fails for good. */
  stream(request: ModelRequest): AsyncIterable<ModelStreamEvent>;
}

/** The provider failed in a way retries did not fix; the message is safe to show (after scrubbing). */
export class ModelError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelError';
  }
}

/** Collects a stream into its final turn: for callers that do not need the deltas. */
export async function completeTurn(client: ModelClient, request: ModelRequest): Promise<Extract<ModelStreamEvent, { type: 'turn_end' }>> {
  for await (const event of client.stream(request)) {
    if (event.type === 'turn_end') return event;
  }
  throw new ModelError(`${client.description} ended its stream without a turn`);
}

/** Splits a thinking text into a short subject (its first bold phrase or line) and the rest. */
export function thoughtFromThinking(thinking: string): { subject: string; description: string } {
  const text = thinking.trim();
  const bold = /^\*\*(.+?)\*\*\s*/.exec(text);
  if (bold) return { subject: bold[1]!.trim(), description: text.slice(bold[0].length).trim() };
  const newline = text.indexOf('\n');
  if (newline > 0 && newline <= 120) return { subject: text.slice(0, newline).trim(), description: text.slice(newline + 1).trim() };
  return { subject: 'Thinking', description: text };
}
