import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Tool } from '@modelcontextprotocol/client';
import type { Logger } from 'pino';
import type { McpPoolConfig, McpServerConfig, ProjectConfig } from '../../config.js';
import { describeError } from '../../errors.js';
import { DEFAULT_TOOL_TIMEOUT_MS, isConnectionLost, isTimeout, untilAborted } from '../../mcp/mcpConnection.js';
import type { McpConnection } from '../../mcp/mcpConnection.js';
import type { McpPool, Lease } from '../../mcp/mcpPool.js';
import { resolveTemplates } from '../../mcp/templates.js';
import type { ProcessSandbox } from '../../sandbox/processSandbox.js';
import { namedPaths, serverReadOnlyPaths } from '../../sandbox/serverPaths.js';
import type { ToolDefinition } from '../../model/modelClient.js';
import { globMatch } from './namePatterns.js';
import { Scrubber } from '../security/scrubber.js';
import { ToolNameTable } from './toolNames.js';
import { toolResultBlocks } from './toolResults.js';
import type { ToolCallContext, ToolCallRequest, ToolInfo, ToolResult, ToolRouter, ToolSession, ToolSessionRequest } from './toolRouter.js';

/** The name of the built-in server; its tools keep their plain names. */
export const BUILTIN_SERVER = 'workspace';

/** Longer than the longest run_shell_command (600 s). */
const BUILTIN_TOOL_TIMEOUT_MS = 630_000;

/** How the built-in workspace server is started for a task whose processes see its workspace at `workspacePath`. */
export type BuiltinLauncher = (workspacePath: string) => { command: string; args: string[] };

export interface McpToolRouterOptions {
  pool: McpPool;
  projects: Record<string, ProjectConfig>;
  poolConfig: McpPoolConfig;
  /** The built-in workspace server's command line; absent: no built-in tools. */
  builtin?: BuiltinLauncher;
  /** Where stdio servers run; absent: as plain processes in the workspace. */
  sandbox?: ProcessSandbox;
  logger: Logger;
}

/** A task could not get a server it requires. The message names server and key, never a value. */
export class RequiredServerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequiredServerError';
  }
}

interface ServerEntry {
  name: string;
  config: McpServerConfig;
  /** The task's hold on the connection; opened on first use for a lazy entry. */
  lease: Promise<Lease>;
  /** True once `lease` has been asked for. */
  opened: boolean;
  /** Scrubs the values that went into the resolved config out of error texts. */
  scrubber: Scrubber;
}

/** A server entry whose connection opens on first use. */
function lazyEntry(name: string, config: McpServerConfig, scrubber: Scrubber, open: () => Promise<Lease>): ServerEntry {
  let lease: Promise<Lease> | undefined;
  const entry: ServerEntry = {
    name, config, scrubber, opened: false,
    get lease() {
      entry.opened = true;
      return (lease ??= open());
    },
  };
  return entry;
}

/** Routes a task's tool calls to its project's MCP servers through the pool. */
export class McpToolRouter implements ToolRouter {
  /**
   * The built-in server's tools are the same for every task: once listed, a task starts its own
   * server process only when the model first calls one of them.
   */
  builtinTools: Tool[] | null = null;
  /**
   * Settles when the session that is listing the built-in tools for the first time has listed them
   * or failed to. Sessions opened meanwhile wait for it rather than each start a process of its own:
   * a burst of new tasks on a fresh Airlock would otherwise start one sandboxed server per task just
   * to learn the same list.
   */
  private builtinListing: Promise<void> | null = null;
  /** What the sandbox shows each configured stdio server (serverPaths), by project and server. */
  private readonly shownPaths = new Map<string, string[]>();

  constructor(private readonly options: McpToolRouterOptions) {}

  async openSession(request: ToolSessionRequest): Promise<ToolSession> {
    const project = this.options.projects[request.projectId] ?? {};
    const wanted = Object.entries(project.mcpServers ?? {}).filter(([, config]) => config.enabled !== false);
    const secretValues = Object.fromEntries([...request.secretKeys].map((key) => [key, request.variables[key]!]));

    const attempts: Promise<ServerEntry | undefined>[] = [];
    let missingRequired: RequiredServerError | undefined;
    if (this.options.builtin && project.builtinTools !== false) {
      const launch = this.options.builtin(this.workspacePath(request));
      // run_shell_command enforces its own limit (at most 600 s); the pool's must not cut it short.
      const config: McpServerConfig = { type: 'stdio', command: launch.command, args: launch.args, required: true, toolTimeout: BUILTIN_TOOL_TIMEOUT_MS };
      const scrubber = new Scrubber(secretValues);
      const lazy = () => lazyEntry(BUILTIN_SERVER, config, scrubber, () => this.lease(request, BUILTIN_SERVER, config, request.variables, launch));
      const connect = () => this.connect(request, BUILTIN_SERVER, config, request.variables, scrubber, launch);
      if (this.builtinTools) attempts.push(Promise.resolve(lazy()));
      // Listed by then: a lazy entry. The listing failed: this session tries for itself. A cancelled
      // task does not wait on another task's server.
      else if (this.builtinListing) attempts.push(untilAborted(this.builtinListing, request.signal).then(() => (this.builtinTools ? lazy() : connect())));
      else attempts.push(this.listBuiltinTools(connect(), request.signal));
    }
    for (const [name, config] of wanted) {
      const resolution = resolveTemplates(config, request.variables);
      if (!resolution.ok) {
        const keys = resolution.missingKeys.map((key) => `{{mcp.${key}}}`).join(', ');
        if (config.required) {
          missingRequired ??= new RequiredServerError(`MCP server "${name}" is required but the task has no value for ${keys}`);
          continue;
        }
        request.onStatus(`MCP server "${name}" skipped: the task has no value for ${keys}`);
        continue;
      }
      const scrubber = new Scrubber({ ...secretValues, ...resolution.server.used });
      attempts.push(this.connect(request, name, resolution.server.config, request.variables, scrubber));
    }
    const settled = await Promise.allSettled(attempts);
    const entries = settled.flatMap((result) => (result.status === 'fulfilled' && result.value ? [result.value] : []));
    const failure = missingRequired ?? (settled.find((result) => result.status === 'rejected') as PromiseRejectedResult | undefined)?.reason;
    if (failure) {
      // Every connect has settled: release what was opened before failing the task.
      for (const entry of entries) if (entry.opened) void entry.lease.then((lease) => lease.release(), () => undefined);
      throw failure;
    }
    return new McpToolSession(entries, this, this.options, request);
  }

  async close(): Promise<void> {
    await this.options.pool.close();
  }

  /** Connects the built-in server for the first session that needs its tools, and lists them for every session. */
  private listBuiltinTools(connecting: Promise<ServerEntry | undefined>, signal: AbortSignal): Promise<ServerEntry | undefined> {
    const listed = connecting.then(async (entry) => {
      // A failure here is the session's to report, when its own listTools meets it.
      if (entry) this.builtinTools ??= await (await entry.lease).connection.listTools({ signal }).catch(() => null);
      return entry;
    });
    const settled = listed.then(() => undefined, () => undefined);
    this.builtinListing = settled;
    void settled.then(() => {
      if (this.builtinListing === settled) this.builtinListing = null;
    });
    return listed;
  }

  /** Leases a connection to one server for one task from the pool. */
  async lease(request: ToolSessionRequest, name: string, config: McpServerConfig, variables: Record<string, string>, launch?: { command: string; args: string[] }): Promise<Lease> {
    const { pool, sandbox } = this.options;
    const stdio = config.type === 'stdio';
    // The workspace (with uploads/ and downloads/) is made when a process first runs in it; tasks
    // that start none never make one. A configured cwd inside it is made too (the config schema
    // allows only relative paths without `..`, src/config.ts, so it stays inside).
    let cwd: string | undefined;
    if (stdio) {
      await request.prepareWorkspace();
      cwd = config.cwd ? join(request.workspaceDir, config.cwd) : request.workspaceDir;
      if (config.cwd) await mkdir(cwd, { recursive: true });
    }
    // A stdio server's environment is the task's env and secrets (then the server's own config env),
    // not Airlock's: HOME defaults to the workspace (as the process sees it) and PATH to Airlock's.
    const env = stdio ? { HOME: this.workspacePath(request), PATH: process.env.PATH ?? '/usr/bin:/bin', ...variables, ...(config.env ?? {}) } : undefined;
    const key = pool.fingerprint(request.projectId, name, stdio ? { ...config, env } : config, stdio ? request.taskId : undefined);
    const network = this.options.projects[request.projectId]?.sandbox?.network ?? 'allow';
    return pool.acquire({
      key, projectId: request.projectId, serverName: name, config,
      ...(stdio ? {
        env, cwd,
        ...(launch ? { launch } : {}),
        ...(sandbox ? { sandbox: { sandbox, workspaceDir: request.workspaceDir, network, readOnlyPaths: launch ? [] : this.serverPaths(request.projectId, name, config) } } : {}),
      } : {}),
      // The built-in server never asks its client anything; configured servers may.
      ...(name === BUILTIN_SERVER ? {} : { serverRequests: this.serverRequests }),
    }, request.signal);
  }

  // Shared by every connection: a request no call in flight can answer is refused, and logged.
  private readonly serverRequests = {
    onRefused: (refused: { server: string; method: string; reason: string }) => this.options.logger.warn(refused, 'refused an MCP server request that belongs to no tool call in flight'),
  };

  /**
   * What the sandbox shows a configured stdio server besides its usual layout: the files its
   * configuration names and their package roots, and its own readOnlyPaths. From the config alone
   * (never a task's values), so it is worked out once per server.
   */
  private serverPaths(projectId: string, name: string, config: McpServerConfig): string[] {
    const key = `${projectId}\0${name}`;
    let paths = this.shownPaths.get(key);
    if (!paths) {
      const named = namedPaths({ command: config.command ?? '', args: config.args ?? [] }, process.env.PATH ?? '');
      this.shownPaths.set(key, (paths = serverReadOnlyPaths(named, config.sandbox?.readOnlyPaths)));
    }
    return paths;
  }

  private workspacePath(request: ToolSessionRequest): string {
    return this.options.sandbox?.workspacePath(request.workspaceDir) ?? request.workspaceDir;
  }

  private async connect(
    request: ToolSessionRequest, name: string, config: McpServerConfig, variables: Record<string, string>,
    scrubber: Scrubber, launch?: { command: string; args: string[] },
  ): Promise<ServerEntry | undefined> {
    try {
      const lease = await this.lease(request, name, config, variables, launch);
      return { name, config, lease: Promise.resolve(lease), opened: true, scrubber };
    } catch (err) {
      const reason = scrubber.text(describeError(err));
      this.options.logger.warn({ taskId: request.taskId, server: name, reason }, 'MCP server unavailable');
      if (config.required) throw new RequiredServerError(`MCP server "${name}" is required but could not be connected: ${reason}`);
      request.onStatus(`MCP server "${name}" is unavailable for this task: ${reason}`);
      return undefined;
    }
  }
}

class McpToolSession implements ToolSession {
  private readonly names = new ToolNameTable();
  private readonly servers = new Map<string, ServerEntry>();
  private readonly toolsOf = new Map<string, Tool[]>();
  private readonly reported = new Set<string>();
  private closed = false;

  constructor(entries: ServerEntry[], private readonly router: McpToolRouter, private readonly options: McpToolRouterOptions, private readonly request: ToolSessionRequest) {
    for (const entry of entries) this.servers.set(entry.name, entry);
  }

  async listTools(options: { refresh?: boolean } = {}): Promise<ToolDefinition[]> {
    const lists = await Promise.all([...this.servers.values()].map(async (entry) => {
      try {
        const builtin = entry.name === BUILTIN_SERVER;
        const listed = builtin && !entry.opened && this.router.builtinTools
          ? this.router.builtinTools
          : await (await entry.lease).connection.listTools({ signal: this.request.signal, refresh: options.refresh === true && !builtin });
        if (builtin) this.router.builtinTools = listed;
        const tools = filterTools(listed, entry.config);
        this.toolsOf.set(entry.name, tools);
        this.reported.delete(entry.name);
        return tools.map((tool) => definition(this.names.add({ server: entry.name, tool: tool.name }, { plain: entry.name === BUILTIN_SERVER }), tool));
      } catch (err) {
        if (this.request.signal.aborted) throw err;
        if (!this.reported.has(entry.name)) {
          this.reported.add(entry.name);
          this.request.onStatus(`MCP server "${entry.name}" could not list its tools: ${entry.scrubber.text(describeError(err))}`);
        }
        return [];
      }
    }));
    return lists.flat();
  }

  serverOf(name: string): string | undefined {
    return this.names.resolve(name)?.server;
  }

  toolInfo(name: string): ToolInfo | undefined {
    const address = this.names.resolve(name);
    if (!address) return undefined;
    const tool = this.toolsOf.get(address.server)?.find((t) => t.name === address.tool);
    return {
      server: address.server,
      tool: address.tool,
      ...(tool?.annotations ? { annotations: tool.annotations } : {}),
      ...(tool?.inputSchema ? { inputSchema: tool.inputSchema as Record<string, unknown> } : {}),
    };
  }

  async callTool(call: ToolCallRequest, context: ToolCallContext): Promise<ToolResult> {
    let address = this.names.resolve(call.name);
    if (!address) {
      // A list_changed notification may have been lost (it often is over HTTP): ask again.
      await this.listTools({ refresh: true });
      address = this.names.resolve(call.name);
    }
    const entry = address && this.servers.get(address.server);
    if (!address || !entry) return errorResult(`Unknown tool: ${call.name}`);
    const timeoutMs = entry.config.toolTimeout ?? DEFAULT_TOOL_TIMEOUT_MS;
    let connection: McpConnection | undefined;
    try {
      connection = (await entry.lease).connection;
      const result = await connection.callTool(address.tool, call.args, {
        signal: context.signal,
        timeoutMs,
        ...(context.onProgress ? { onProgress: context.onProgress } : {}),
        ...(context.meta ? { meta: context.meta } : {}),
        ...(this.request.serverRequests ? { requests: { owner: this.request.taskId, callId: call.callId, handler: this.request.serverRequests } } : {}),
      });
      return { content: toolResultBlocks(result, this.options.poolConfig.toolResultLimitChars), isError: result.isError === true, server: entry.name };
    } catch (err) {
      if (context.signal.aborted) throw err;
      const reason = isTimeout(err)
        ? `timed out after ${timeoutMs} ms`
        : isConnectionLost(err)
          ? `the connection to the server was lost${connection?.stderr ? `; its last output: ${connection.stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`
          : describeError(err);
      return { ...errorResult(entry.scrubber.text(`MCP server "${entry.name}" failed on ${address.tool}: ${reason}`)), server: entry.name };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.servers.values()].filter((entry) => entry.opened).map((entry) => entry.lease.then((lease) => lease.release(), () => undefined)));
  }
}

function definition(name: string, tool: Tool): ToolDefinition {
  const description = [tool.title && tool.title !== tool.name ? tool.title : undefined, tool.description].filter(Boolean).join(': ');
  return { name, description: description || tool.name, inputSchema: (tool.inputSchema as Record<string, unknown>) ?? { type: 'object' } };
}

function filterTools(tools: Tool[], config: McpServerConfig): Tool[] {
  return tools.filter((tool) =>
    (!config.includeTools?.length || config.includeTools.some((pattern) => globMatch(pattern, tool.name)))
    && !config.excludeTools?.some((pattern) => globMatch(pattern, tool.name)));
}


function errorResult(text: string): ToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}
