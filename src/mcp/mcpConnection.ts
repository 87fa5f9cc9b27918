import { AsyncLocalStorage } from 'node:async_hooks';
import { Client, ProtocolError, ProtocolErrorCode, SSEClientTransport, SdkError, SdkErrorCode, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { CallToolResult, ClientCapabilities, CreateMessageResult, ElicitResult, Tool, Transport } from '@modelcontextprotocol/client';
import { getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import type { McpServerConfig, NetworkPolicy } from '../config.js';
import type { ProcessSandbox } from '../sandbox/processSandbox.js';
import { CallDeadline } from './callDeadline.js';
import { pacedFetch } from './inboundPacing.js';
import { launchProblem } from '../sandbox/serverPaths.js';
import { ProcessTransport } from './processTransport.js';
import { attribute, ServerRequestBudget, ThrottledReport, waitForTurn } from './serverRequests.js';
import type { ActiveCall, CallRequests, ServerRequestContext, ServerRequestHandler } from './serverRequests.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_TOOL_TIMEOUT_MS = 60_000;
const STDERR_TAIL_CHARS = 2_000;
const CLIENT_INFO = { name: 'airlock', version: '0.1.0' };
/** The longest delay a Node timer takes: a call whose time limit Airlock keeps itself passes this to the SDK. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * What a connection that serves server requests declares. Form defaults (SEP-1034) are filled in
 * by Airlock when it checks a person's answer, hence `applyDefaults`.
 */
export const SERVER_REQUEST_CAPABILITIES: ClientCapabilities = { elicitation: { form: { applyDefaults: true }, url: {} }, sampling: {} };

/** The call a server's message arrived with, followed through the SDK's promise chains. */
const relatedCall = new AsyncLocalStorage<ActiveCall>();

/** Everything needed to open one connection; values are already resolved (secrets inside). */
export interface ConnectionSpec {
  /** The pool's key: an HMAC fingerprint of project + server + resolved config (+ task for stdio). */
  key: string;
  projectId: string;
  serverName: string;
  config: McpServerConfig;
  /** stdio: the working directory and the whole environment of the process. */
  cwd?: string;
  env?: Record<string, string>;
  /** stdio: the command line to run instead of config.command/args (the built-in server's). */
  launch?: { command: string; args: string[] };
  /**
   * Serve the server's elicitation and sampling requests (and declare them as capabilities);
   * absent: declare none. `onRefused` hears of each request that belonged to no call in flight.
   */
  serverRequests?: { onRefused(refused: { server: string; method: string; reason: string }): void };
  /**
   * stdio: the task's sandbox, which wraps the process each time it is spawned; `cwd` is then a path
   * inside `workspaceDir`; `readOnlyPaths` are shown to this server besides the usual layout.
   */
  sandbox?: { sandbox: ProcessSandbox; workspaceDir: string; network: NetworkPolicy; readOnlyPaths?: string[] };
}

/** Progress of a call as a server reports it. */
export interface CallProgress {
  progress: number;
  total?: number;
  message?: string;
}

export interface CallOptions {
  signal: AbortSignal;
  timeoutMs: number;
  onProgress?: (progress: CallProgress) => void;
  /** Sent as the request's `_meta`. */
  meta?: Record<string, unknown>;
  /**
   * Who answers the server's requests made while it serves this call. With it, `timeoutMs` does
   * not count the time spent answering them.
   */
  requests?: CallRequests;
}

type State = 'idle' | 'connecting' | 'ready' | 'closed';

/**
 * One MCP client connection (v2 SDK) to one server. It connects on demand and again after the
 * server went away (a crashed process, a dropped HTTP session); it caches the tool list until the
 * server says it changed.
 */
export class McpConnection {
  private state: State = 'idle';
  private client: Client | null = null;
  private connecting: Promise<Client> | null = null;
  private tools: Tool[] | null = null;
  private stderrTail = '';
  /** The first STDERR_TAIL_CHARS of what the current process printed on stderr: its first error is there. */
  private stderrHead = '';
  private readonly active = new Set<ActiveCall>();
  private readonly requestBudget = new ServerRequestBudget();
  private readonly refusals = new ThrottledReport<{ server: string; method: string; reason: string }>((refused) => this.spec.serverRequests?.onRefused(refused));
  /** Tasks holding this connection now. */
  leases = 0;
  /** When the last lease was released (for the idle TTL and eviction). */
  idleSince = Date.now();
  /** Connects made over the connection's life (1 unless it had to reconnect). */
  connects = 0;

  constructor(readonly spec: ConnectionSpec) {}

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** The negotiated protocol revision, once connected. */
  get protocolVersion(): string | undefined {
    return this.client?.getNegotiatedProtocolVersion();
  }

  /** What the server printed on stderr lately (stdio), for error messages. */
  get stderr(): string {
    return this.stderrTail;
  }

  /** Connects unless connected; concurrent callers share one attempt. */
  async connect(signal?: AbortSignal): Promise<Client> {
    if (this.state === 'closed') throw new Error('the connection is closed');
    if (this.client) return this.client;
    // The attempt is shared, so no one caller's signal may end it: each caller stops waiting on its
    // own abort, and the attempt itself ends at its timeout.
    this.connecting ??= this.open().finally(() => (this.connecting = null));
    return untilAborted(this.connecting, signal);
  }

  /** The server's tools (all pages), from the cache unless `refresh`. */
  async listTools(options: { refresh?: boolean; signal?: AbortSignal } = {}): Promise<Tool[]> {
    if (this.tools && !options.refresh) return this.tools;
    const client = await this.connect(options.signal);
    const timeout = this.spec.config.timeout ?? DEFAULT_CONNECT_TIMEOUT_MS;
    // 2026-07-28 list results can be cached by the SDK (ttlMs); a refresh must reach the server.
    const { tools } = await this.retryOnExpiredSession(client, (c) => c.listTools(undefined, { timeout, signal: options.signal, ...(options.refresh ? { cacheMode: 'refresh' as const } : {}) }));
    this.tools = tools;
    return tools;
  }

  /** Calls a tool; throws on transport failure, timeout or abort (the caller turns that into a tool error). */
  async callTool(name: string, args: Record<string, unknown>, options: CallOptions): Promise<CallToolResult> {
    const client = await this.connect(options.signal);
    const call = (signal: AbortSignal, timeout: number) => this.retryOnExpiredSession(client, (c) =>
      c.callTool(
        { name, arguments: args, ...(options.meta ? { _meta: options.meta } : {}) },
        {
          signal,
          timeout,
          onprogress: options.onProgress ? (p) => options.onProgress!({ progress: p.progress, ...(p.total !== undefined ? { total: p.total } : {}), ...(p.message ? { message: p.message } : {}) }) : undefined,
        },
      ) as Promise<CallToolResult>,
    );
    if (!options.requests || !this.spec.serverRequests) return call(options.signal, options.timeoutMs);

    // The SDK's own timeout would run on while a person answers the server, so Airlock keeps the
    // call's time itself, pausing it during those answers, and ends the call the way the SDK would.
    const controller = new AbortController();
    const onAbort = () => controller.abort(options.signal.reason);
    options.signal.addEventListener('abort', onAbort, { once: true });
    if (options.signal.aborted) onAbort();
    const deadline = new CallDeadline(options.timeoutMs, () => controller.abort(new SdkError(SdkErrorCode.RequestTimeout, 'Request timed out', { timeout: options.timeoutMs })));
    const active: ActiveCall = { ...options.requests, signal: controller.signal, pause: () => deadline.pause() };
    this.active.add(active);
    try {
      return await relatedCall.run(active, () => call(controller.signal, MAX_TIMER_MS));
    } finally {
      deadline.stop();
      this.active.delete(active);
      options.signal.removeEventListener('abort', onAbort);
      // Requests of this call still waiting for an answer are withdrawn with it.
      controller.abort(new Error('the tool call ended'));
    }
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const client = this.client ?? (await this.connecting?.catch(() => null));
    this.client = null;
    await client?.close().catch(() => undefined);
  }

  private async open(): Promise<Client> {
    this.state = 'connecting';
    const client = new Client(CLIENT_INFO, {
      capabilities: this.spec.serverRequests ? SERVER_REQUEST_CAPABILITIES : {},
      versionNegotiation: { mode: negotiationMode(this.spec.config) },
      listChanged: { tools: { autoRefresh: false, debounceMs: 0, onChanged: () => void (this.tools = null) } },
    });
    if (this.spec.serverRequests) {
      // The same handlers answer 2025-era requests and the embedded requests of a 2026-07-28
      // `input_required` result (the SDK retries the call with the answers).
      client.setRequestHandler('elicitation/create', (request, ctx) =>
        this.serve<ElicitResult>('elicitation/create', ctx.mcpReq.signal, (handler, context) => handler.elicit(request.params, context), () => ({ action: 'decline' })));
      client.setRequestHandler('sampling/createMessage', (request, ctx) =>
        this.serve<CreateMessageResult>('sampling/createMessage', ctx.mcpReq.signal, (handler, context) => handler.createMessage(request.params, context), (reason) => {
          throw new ProtocolError(ProtocolErrorCode.InvalidRequest, `Airlock refused the sampling request: ${reason}`);
        }));
    }
    let opened: Awaited<ReturnType<McpConnection['transport']>>;
    try {
      opened = await this.transport();
    } catch (err) {
      if (!this.isClosed) this.state = 'idle';
      throw err;
    }
    const { transport, release } = opened;
    // A transport that closes (process exit, dropped stream) leaves the connection to be reopened.
    client.onclose = () => {
      if (this.client === client) this.client = null;
      this.tools = null;
    };
    client.onerror = () => {};
    try {
      await client.connect(transport, { timeout: this.spec.config.timeout ?? DEFAULT_CONNECT_TIMEOUT_MS });
    } catch (err) {
      await client.close().catch(() => undefined);
      release();
      if (!this.isClosed) this.state = 'idle';
      // A process that dies while starting says why on stderr, not in the protocol.
      const said = describeStderr(this.stderrHead, this.stderrTail);
      if (said) throw new Error(`${err instanceof Error ? err.message : String(err)}; ${said}`, { cause: err });
      throw err;
    }
    if (this.isClosed) {
      await client.close().catch(() => undefined);
      throw new Error('the connection was closed while connecting');
    }
    this.connects++;
    this.client = client;
    this.state = 'ready';
    return client;
  }

  // Routes a server's request to the owner of the call it belongs to; refuses one that belongs to none.
  private async serve<T>(
    method: string, signal: AbortSignal,
    answer: (handler: ServerRequestHandler, context: ServerRequestContext) => Promise<T>,
    refuse: (reason: string) => T,
  ): Promise<T> {
    const attribution = attribute(relatedCall.getStore(), [...this.active]);
    if (attribution.kind === 'none') {
      this.refusals.offer({ server: this.spec.serverName, method, reason: attribution.reason });
      return refuse(attribution.reason);
    }
    const calls = attribution.kind === 'call' ? [attribution.call] : attribution.calls;
    const owner = calls[0]!.owner;
    const admission = this.requestBudget.enter(owner);
    if (admission.kind === 'refused') return refuse(admission.reason);
    const resumes = calls.map((call) => call.pause());
    const context: ServerRequestContext = {
      server: this.spec.serverName,
      ...(attribution.kind === 'call' ? { callId: attribution.call.callId } : {}),
      // Withdrawn when the server cancels it, or when the call it belongs to (or, unattributed
      // within one owner, the last of that owner's calls) ends.
      signal: AbortSignal.any([signal, attribution.kind === 'call' ? attribution.call.signal : allAborted(calls.map((call) => call.signal))]),
    };
    let withdrawn = false;
    try {
      // Past its owner's rate, a request waits for its turn; withdrawn meanwhile, it never reaches the task.
      if (admission.delayMs > 0 && !(await waitForTurn(admission.delayMs, context.signal))) {
        withdrawn = true;
        return refuse('the request was withdrawn while it waited for its turn');
      }
      return await answer(calls[0]!.handler, context);
    } finally {
      this.requestBudget.leave(owner, withdrawn);
      for (const resume of resumes) resume();
    }
  }

  /** A new transport, and what undoes the set-up of its process once that has exited. */
  private async transport(): Promise<{ transport: Transport; release: () => void }> {
    const { config } = this.spec;
    switch (config.type) {
      // Event streams are paced (inboundPacing.ts), so that a flooding server cannot hold the event loop.
      case 'http':
        return { transport: new StreamableHTTPClientTransport(new URL(config.url!), { requestInit: { headers: config.headers ?? {} }, fetch: pacedFetch }), release: () => {} };
      case 'sse':
        return { transport: new SSEClientTransport(new URL(config.url!), { requestInit: { headers: config.headers ?? {} }, fetch: pacedFetch }), release: () => {} };
      case 'stdio': {
        const launch = this.spec.launch ?? { command: config.command!, args: config.args ?? [] };
        const placement = this.spec.sandbox;
        if (!this.spec.launch) this.checkLaunch(launch);
        const spawn = placement
          ? await placement.sandbox.prepare({
            ...launch, env: this.spec.env ?? {}, workspaceDir: placement.workspaceDir,
            cwd: this.spec.cwd ?? placement.workspaceDir, network: placement.network, readOnlyPaths: placement.readOnlyPaths ?? [],
          })
          : { ...launch, env: this.spec.env ?? getDefaultEnvironment(), cwd: this.spec.cwd ?? process.cwd(), release: () => {} };
        const transport = new ProcessTransport(spawn);
        this.stderrHead = '';
        transport.stderr.on('data', (chunk: Buffer) => {
          const text = chunk.toString('utf8');
          if (this.stderrHead.length < STDERR_TAIL_CHARS) this.stderrHead = (this.stderrHead + text).slice(0, STDERR_TAIL_CHARS);
          this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_CHARS);
        });
        // Set before connect(), which chains it: called when the process has exited.
        transport.onclose = spawn.release;
        return { transport, release: spawn.release };
      }
    }
  }

  /** Throws, before anything starts, when the server's command or a file it names cannot be found where it will run. */
  private checkLaunch(launch: { command: string; args: string[] }): void {
    const placement = this.spec.sandbox;
    const cwd = this.spec.cwd ?? placement?.workspaceDir ?? process.cwd();
    const shownAs = placement ? placement.sandbox.workspacePath(placement.workspaceDir) + cwd.slice(placement.workspaceDir.length) : cwd;
    const shows = placement?.sandbox.shows?.bind(placement.sandbox);
    const problem = launchProblem({
      launch, pathVar: this.spec.env?.PATH ?? process.env.PATH ?? '', cwd, cwdShownAs: shownAs,
      ...(shows ? { shows: (path: string) => shows(path, placement!.readOnlyPaths ?? []) } : {}),
      keyOf: (key) => `projects.${this.spec.projectId}.mcpServers.${this.spec.serverName}.${key}`,
    });
    if (problem) throw new LaunchError(`the server was not started: ${problem}`);
  }

  // An HTTP server that forgot our session answers 404: the request never ran, so a new session
  // and one more try are safe (MCP 2025-06-18, session management).
  private async retryOnExpiredSession<T>(client: Client, run: (client: Client) => Promise<T>): Promise<T> {
    try {
      return await run(client);
    } catch (err) {
      if (!isExpiredSession(err) || this.state === 'closed') throw err;
      if (this.client === client) this.client = null;
      await client.close().catch(() => undefined);
      // The new session's streams outlive this call: they must not be opened inside its context.
      return run(await relatedCall.exit(() => this.connect()));
    }
  }
}

/** A stdio server that Airlock did not start, because what it needs is not there (the message says what and how to fix it). */
export class LaunchError extends Error {
  override readonly name = 'LaunchError';
}

const ERROR_LINE = /\b(error|exception|fatal|panic|cannot|can't|could not|not found|no such|denied|traceback)\b/i;

/**
 * What a server that died while starting said: the first line of its stderr that reads like an
 * error (Node's `Error: Cannot find module …` comes after a few lines of source) and its last lines.
 */
export function describeStderr(head: string, tail: string): string | undefined {
  const lines = (text: string) => text.split('\n').map((line) => line.trim()).filter(Boolean);
  const last = lines(tail).slice(-3);
  if (!last.length) return undefined;
  const first = lines(head).find((line) => ERROR_LINE.test(line));
  const lastText = `its last output: ${last.join(' | ')}`;
  return first && !last.includes(first) ? `the server's first error: ${first}; ${lastText}` : `the server's ${lastText}`;
}

function negotiationMode(config: McpServerConfig): 'legacy' | 'auto' | { pin: string } {
  const protocol = config.protocol ?? (config.type === 'http' ? 'auto' : 'legacy');
  return protocol === '2026-07-28' ? { pin: '2026-07-28' } : protocol;
}

function isExpiredSession(err: unknown): boolean {
  const status = (err as { status?: number; data?: { status?: number } })?.data?.status ?? (err as { status?: number })?.status;
  return status === 404 || (err instanceof Error && /\b404\b/.test(err.message) && /session/i.test(err.message));
}

/** True when a call failed because it ran out of time (the SDK also uses this code for a caller's abort, without `data.timeout`). */
export function isTimeout(err: unknown): boolean {
  return err instanceof SdkError && err.code === SdkErrorCode.RequestTimeout && typeof (err.data as { timeout?: unknown } | undefined)?.timeout === 'number';
}

/** A signal that aborts once every one of `signals` has. */
function allAborted(signals: AbortSignal[]): AbortSignal {
  const controller = new AbortController();
  const check = () => {
    if (signals.every((signal) => signal.aborted)) controller.abort(signals.at(-1)?.reason);
  };
  for (const signal of signals) signal.addEventListener('abort', check, { once: true });
  check();
  return controller.signal;
}

/** `promise`, or the signal's reason once it aborts first. */
export function untilAborted<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value); },
      (err) => { signal.removeEventListener('abort', onAbort); reject(err); },
    );
  });
}

/** True when the connection went away under a call. */
export function isConnectionLost(err: unknown): boolean {
  return err instanceof SdkError && (err.code === SdkErrorCode.ConnectionClosed || err.code === SdkErrorCode.NotConnected || err.code === SdkErrorCode.SendFailed);
}
