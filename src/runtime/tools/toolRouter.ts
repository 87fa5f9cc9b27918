import type { ServerRequestHandler } from '../../mcp/serverRequests.js';
import type { ToolDefinition, ToolResultBlock } from '../../model/modelClient.js';

/** A tool call the model asked for. */
export interface ToolCallRequest {
  /** The model's id for this call (tool_use id). */
  callId: string;
  /** The tool name as the model sees it. */
  name: string;
  /** The arguments, as the model wrote them. */
  args: Record<string, unknown>;
}

/** Progress reported by a tool while it runs (MCP progress notifications). */
export interface ToolProgress {
  progress: number;
  total?: number;
  message?: string;
}

/** What the caller of a tool passes along with the call. */
export interface ToolCallContext {
  /** Aborted when the task is cancelled or the call times out. */
  signal: AbortSignal;
  /** Called for each progress notification. */
  onProgress?: (progress: ToolProgress) => void;
  /** Sent with the call as the MCP request's `_meta` (e.g. the approval that allowed it). */
  meta?: Record<string, unknown>;
}

/** What the approval gate needs to know of a tool. */
export interface ToolInfo {
  /** The server's name for it (the model sees another). */
  tool: string;
  server: string;
  /** The server's hints; untrusted unless the project says otherwise. */
  annotations?: { readOnlyHint?: boolean; destructiveHint?: boolean; idempotentHint?: boolean; openWorldHint?: boolean };
  inputSchema?: Record<string, unknown>;
}

/** The result of one tool call: failures are results with isError, never exceptions. */
export interface ToolResult {
  /** What the model receives. */
  content: ToolResultBlock[];
  /** True when the tool failed; the model is told so and goes on. */
  isError: boolean;
  /** Name of the server that ran the call, when there is one. */
  server?: string;
}

/** The tools of one task session, and the way to call them. */
export interface ToolSession {
  /** The tools the model may call now; `refresh` asks the servers again instead of a cache. */
  listTools(options?: { refresh?: boolean }): Promise<ToolDefinition[]>;
  /** The server a tool name belongs to, if known (for events). */
  serverOf(name: string): string | undefined;
  /** Where a tool lives and what its server says of it, for a name listed this session. */
  toolInfo(name: string): ToolInfo | undefined;
  /** Runs one call; resolves with an error result when the tool fails, throws only when aborted. */
  callTool(call: ToolCallRequest, context: ToolCallContext): Promise<ToolResult>;
  /** Releases the session's connections and processes. */
  close(): Promise<void>;
}

/** What a tool session is opened with: the task and its variables (secrets win over env). */
export interface ToolSessionRequest {
  taskId: string;
  projectId: string;
  /** env and secrets merged, secrets winning; never persisted. */
  variables: Record<string, string>;
  /** Keys of `variables` that came from secrets. */
  secretKeys: ReadonlySet<string>;
  /** The task's workspace directory: the cwd of its stdio servers and built-in tools. */
  workspaceDir: string;
  /**
   * Creates the workspace directory (and its uploads/ and downloads/) if it is not there yet. Called
   * before any process is started in it, so a task that never starts one makes no directory.
   */
  prepareWorkspace: () => Promise<void>;
  /** Transient states to show on the stream (e.g. a server that could not be connected). */
  onStatus: (message: string) => void;
  signal: AbortSignal;
  /** Answers what the task's MCP servers ask while serving its calls (elicitation, sampling); absent: they may not ask. */
  serverRequests?: ServerRequestHandler;
}

/** Opens a tool session per task; the MCP pool implements this. */
export interface ToolRouter {
  openSession(request: ToolSessionRequest): Promise<ToolSession>;
  /** Closes everything the router holds (at shutdown). */
  close(): Promise<void>;
}

/** A router with no tools: the agent can only answer in text. */
export class EmptyToolRouter implements ToolRouter {
  async openSession(): Promise<ToolSession> {
    return {
      listTools: async () => [],
      serverOf: () => undefined,
      toolInfo: () => undefined,
      callTool: async (call) => ({ content: [{ type: 'text', text: `Unknown tool: ${call.name}` }], isError: true }),
      close: async () => {},
    };
  }
  async close(): Promise<void> {}
}
