import type { ModelClient, ModelRequest, ModelStreamEvent, ToolDefinition } from '../../src/model/modelClient.js';
import { ScriptedModelClient } from '../../src/model/scriptedModelClient.js';
import type { ToolCallContext, ToolCallRequest, ToolResult, ToolRouter, ToolSession, ToolSessionRequest } from '../../src/runtime/tools/toolRouter.js';

export type FakeToolHandler = (args: Record<string, unknown>, context: ToolCallContext & { variables: Record<string, string> }) => Promise<ToolResult> | ToolResult;

/**
 * A ToolRouter with the tools a test declares. A call to any other tool is recorded in
 * `unexpected` (tests assert it stays empty) and answered with an error result.
 */
export class FakeToolRouter implements ToolRouter {
  readonly calls: ToolCallRequest[] = [];
  readonly unexpected: ToolCallRequest[] = [];
  readonly sessions: ToolSessionRequest[] = [];
  openSessions = 0;

  constructor(private readonly tools: Record<string, { description?: string; handler: FakeToolHandler; server?: string; annotations?: { readOnlyHint?: boolean }; inputSchema?: Record<string, unknown> }>) {}

  async openSession(request: ToolSessionRequest): Promise<ToolSession> {
    this.sessions.push(request);
    this.openSessions++;
    let closed = false;
    return {
      listTools: async (): Promise<ToolDefinition[]> =>
        Object.entries(this.tools).map(([name, tool]) => ({ name, description: tool.description ?? name, inputSchema: tool.inputSchema ?? { type: 'object' } })),
      serverOf: (name) => this.tools[name]?.server,
      toolInfo: (name) => {
        const tool = this.tools[name];
        return tool ? { server: tool.server ?? 'fake', tool: name, ...(tool.annotations ? { annotations: tool.annotations } : {}), inputSchema: tool.inputSchema ?? { type: 'object' } } : undefined;
      },
      callTool: async (call, context) => {
        this.calls.push(call);
        const tool = this.tools[call.name];
        if (!tool) {
          this.unexpected.push(call);
          return { content: [{ type: 'text', text: `fake router: unexpected tool ${call.name}` }], isError: true };
        }
        return tool.handler(call.args, { ...context, variables: request.variables });
      },
      close: async () => {
        if (!closed) this.openSessions--;
        closed = true;
      },
    };
  }

  async close(): Promise<void> {}
}

/** The scripted model, recording every request it is given. */
export class RecordingModel implements ModelClient {
  readonly description = 'recording-scripted';
  readonly requests: ModelRequest[] = [];
  private readonly inner = new ScriptedModelClient();

  stream(request: ModelRequest): AsyncIterable<ModelStreamEvent> {
    this.requests.push({ ...request, messages: structuredClone(request.messages) });
    return this.inner.stream(request);
  }
}

export const text = (value: string): ToolResult => ({ content: [{ type: 'text', text: value }], isError: false });

/**
 * A model the test drives by hand: each turn yields the deltas the test pushes and ends when the
 * test calls `end()`. It honours the abort signal like a real provider.
 */
export class ManualModel implements ModelClient {
  readonly description = 'manual';
  private queue: (ModelStreamEvent | null)[] = [];
  private wake: (() => void) | null = null;
  turns = 0;

  push(...events: ModelStreamEvent[]): void {
    this.queue.push(...events);
    this.wake?.();
  }

  /** Ends the current turn with the given text as the final answer. */
  end(text: string): void {
    this.push({ type: 'turn_end', content: [{ type: 'text', text }], stopReason: 'end_turn', usage: { inputTokens: 1, outputTokens: 1 } });
  }

  async *stream(request: ModelRequest): AsyncGenerator<ModelStreamEvent> {
    this.turns++;
    for (;;) {
      request.signal.throwIfAborted();
      const next = this.queue.shift();
      if (next === undefined) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          request.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        this.wake = null;
        continue;
      }
      if (next === null) continue;
      yield next;
      if (next.type === 'turn_end') return;
    }
  }
}
