import type { EventRecord, Thought, ToolCallRecord } from '../../store/store.js';

/** What a run (or the current turn) has produced so far, derived from its events alone. */
export interface TurnState {
  /** The answer text so far: finished assistant texts and the partial one, joined by blank lines. */
  content: string;
  /** Assistant texts that were completed (a content event with isPartial false), in order. */
  finished: string[];
  /** The text of the assistant message still streaming, if any. */
  partial: string;
  thoughts: Thought[];
  toolCalls: ToolCallRecord[];
  /** Each call's status as its last `tool_call` event gave it (before any result). */
  callStatuses: Map<string, ToolCallRecord['status']>;
  /** Input requests of MCP servers still waiting for an answer, oldest first. */
  pendingInputs: PendingInput[];
  /** When the last event folded in was created. */
  updatedAt: string | null;
}

/** An `input_required` event not yet followed by its `input_resolved`. */
export interface PendingInput {
  /** The `input_required` event's payload, as it was sent. */
  request: Record<string, unknown> & { requestId: string };
  /** When the request was made (the event's time). */
  requestedAt: string;
}

export function emptyTurnState(): TurnState {
  return { content: '', finished: [], partial: '', thoughts: [], toolCalls: [], callStatuses: new Map(), pendingInputs: [], updatedAt: null };
}

/**
 * Folds events into the state they describe. Deriving it from the stored events, rather than from
 * memory, means any node can answer GET /tasks/:id and a stream's catch-up for any task.
 */
export function foldEvents(events: Iterable<EventRecord>): TurnState {
  const finished: string[] = [];
  let partial = '';
  const thoughts: Thought[] = [];
  const calls = new Map<string, ToolCallRecord>();
  const callStatuses = new Map<string, ToolCallRecord['status']>();
  const inputs = new Map<string, PendingInput>();
  let updatedAt: string | null = null;

  for (const event of events) {
    updatedAt = event.createdAt;
    const data = event.data;
    switch (event.type) {
      case 'content':
        if (data.isPartial) partial += String(data.text ?? '');
        else {
          const text = String(data.text ?? '');
          if (text) finished.push(text);
          partial = '';
        }
        break;
      case 'thought':
        thoughts.push({ subject: String(data.subject ?? ''), description: String(data.description ?? '') });
        break;
      case 'tool_call': {
        const callId = String(data.callId);
        const previous = calls.get(callId);
        callStatuses.set(callId, data.status as ToolCallRecord['status']);
        calls.set(callId, {
          ...previous,
          callId,
          toolName: data.toolName === undefined ? (previous?.toolName ?? '') : String(data.toolName),
          ...(data.server ? { server: String(data.server) } : {}),
          ...(data.approvalId ? { approvalId: String(data.approvalId) } : {}),
          status: data.status as ToolCallRecord['status'],
          args: (data.args ?? previous?.args ?? {}) as Record<string, unknown>,
        });
        break;
      }
      case 'tool_result': {
        const callId = String(data.callId);
        const previous = calls.get(callId);
        if (previous) calls.set(callId, { ...previous, status: data.status as ToolCallRecord['status'], output: String(data.output ?? '') });
        break;
      }
      case 'input_required':
        inputs.set(String(data.requestId), { request: { ...data, requestId: String(data.requestId) }, requestedAt: event.createdAt });
        break;
      case 'input_resolved':
        inputs.delete(String(data.requestId));
        break;
    }
  }
  const content = [...finished, ...(partial ? [partial] : [])].join('\n\n');
  return { content, finished, partial, thoughts, toolCalls: [...calls.values()], callStatuses, pendingInputs: [...inputs.values()], updatedAt };
}

/** A tool call of a turn that a run left unfinished, as its events describe it. */
export interface UnfinishedCall {
  callId: string;
  toolName: string;
  server?: string;
  /** The arguments the model gave (an approval may have replaced them for the execution). */
  args: Record<string, unknown>;
  approvalId?: string;
  /** The result, when the call got one before the run stopped. */
  result?: { status: ToolCallRecord['status']; output: string };
}

/** The model turn a suspended run was in: its answer text, thoughts and tool calls. */
export interface UnfinishedTurn {
  text: string;
  thoughts: Thought[];
  calls: UnfinishedCall[];
}

/**
 * The turn described by the events after the last stored message, when it ended in tool calls that
 * were not all stored: what a resumed run must finish before the model goes on.
 */
export function unfinishedTurn(events: EventRecord[]): UnfinishedTurn | undefined {
  const state = foldEvents(events);
  const calls = new Map<string, UnfinishedCall>();
  for (const event of events) {
    const data = event.data;
    const callId = String(data.callId);
    // A server's sampling request shows as a call with a parent; it is not the model's.
    if (data.parentCallId !== undefined) continue;
    if (event.type === 'tool_call' && !calls.has(callId)) {
      calls.set(callId, {
        callId,
        toolName: String(data.toolName ?? ''),
        ...(data.server ? { server: String(data.server) } : {}),
        args: (data.args ?? {}) as Record<string, unknown>,
        ...(data.approvalId ? { approvalId: String(data.approvalId) } : {}),
      });
    } else if (event.type === 'tool_call' && data.approvalId) {
      calls.get(callId)!.approvalId = String(data.approvalId);
    } else if (event.type === 'tool_result' && calls.has(callId)) {
      calls.get(callId)!.result = { status: data.status as ToolCallRecord['status'], output: String(data.output ?? '') };
    }
  }
  if (!calls.size) return undefined;
  return { text: state.finished.join('\n\n'), thoughts: state.thoughts, calls: [...calls.values()] };
}
