import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { DestinationStream, Logger } from 'pino';
import { buildApp } from './api/app.js';
import { configSecrets, DEFAULT_PROJECT, projectModel } from './config.js';
import type { Config, ProjectConfig } from './config.js';
import { listen, StartupGate } from './listen.js';
import { createLogger } from './logger.js';
import { ownModulePath, RUNS_FROM_BUILD } from './projectRoot.js';
import { AnthropicModelClient } from './model/anthropicModelClient.js';
import type { ModelClient } from './model/modelClient.js';
import { ScriptedModelClient } from './model/scriptedModelClient.js';
import { sdkLogging } from './model/sdkLogger.js';
import { createApiKey, hashApiKey } from './runtime/security/apiKeys.js';
import { EventLog, InProcessEventBus } from './runtime/events/events.js';
import { ApprovalGate } from './runtime/approvals/approvalGate.js';
import { InputRequests } from './runtime/approvals/inputRequests.js';
import { Scrubber, SecretRegistry } from './runtime/security/scrubber.js';
import { SessionRegistry } from './runtime/runs/sessions.js';
import { InProcessTaskQueue } from './runtime/tasks/taskQueue.js';
import { TaskRunner } from './runtime/runs/taskRunner.js';
import { TaskService } from './runtime/tasks/taskService.js';
import { TaskStreams } from './runtime/tasks/taskStream.js';
import { TaskArtifacts } from './runtime/tasks/taskArtifacts.js';
import { Readiness } from './runtime/tasks/readiness.js';
import { WorkspaceRetention } from './runtime/tasks/workspaceRetention.js';
import { Uploads } from './sandbox/uploads.js';
import { DOWNLOADS_DIR, openWorkspaces, UPLOADS_DIR, WORKSPACE_MOUNT } from './sandbox/workspaces.js';
import type { ToolRouter } from './runtime/tools/toolRouter.js';
import { McpPool } from './mcp/mcpPool.js';
import { McpToolRouter } from './runtime/tools/mcpToolRouter.js';
import type { BuiltinLauncher } from './runtime/tools/mcpToolRouter.js';
import { startSandbox } from './sandbox/sandboxMode.js';
import { DataDirLock } from './store/dataDirLock.js';
import { ThreadedStore } from './store/storeThread.js';
import type { Store } from './store/store.js';
import type { TaskRecord } from './store/store.js';

/** What a test or the CLI may swap in; everything else comes from the Config. */
export interface AirlockOverrides {
  logDestination?: DestinationStream;
  toolRouter?: ToolRouter;
  modelFor?: (projectId: string) => ModelClient;
  /** Where the bootstrap key is announced (default: stdout). */
  announce?: (text: string) => void;
}

/** A running Airlock: its HTTP server and the parts tests want to reach. */
export interface Airlock {
  server: Server;
  url: string;
  store: Store;
  tasks: TaskService;
  logger: Logger;
  secrets: SecretRegistry;
  pool: McpPool;
  /** Set when this start created the first API key (shown once). */
  createdApiKey?: string;
  /** Stops accepting, winds down tasks, closes everything. */
  close(): Promise<void>;
}

export const BASE_SYSTEM_PROMPT = [
  'You are an Airlock agent. Work step by step, use the tools you are given when they help, and finish with a clear answer.',
  `Your workspace is ${WORKSPACE_MOUNT}, the working directory of your tools. Files the user uploaded are in ${WORKSPACE_MOUNT}/${UPLOADS_DIR}/ (${UPLOADS_DIR}/ from there).`,
  `Write the files you make for the user (your deliverables) to ${WORKSPACE_MOUNT}/${DOWNLOADS_DIR}/ (${DOWNLOADS_DIR}/); the user downloads them from there.`,
].join(' ');

/**
 * The composition root: lock the data dir → config → store → runtime → api → listen → first key
 * and recovery → serve. Nothing of the data dir is touched before its lock is held, and the tasks
 * a previous process left running are marked failed only once this one listens: a start that
 * cannot listen changes no task. A start that fails undoes what it did, the lock last.
 */
export async function startAirlock(config: Config, overrides: AirlockOverrides = {}): Promise<Airlock> {
  const secrets = new SecretRegistry();
  secrets.register(configSecrets(config));
  const logger = createLogger({ level: config.logLevel, secrets, destination: overrides.logDestination });
  const lock = DataDirLock.acquire(config.dataDir);
  const undo: Array<() => unknown> = [() => lock.release()];
  try {
    return await startLocked(config, overrides, { secrets, logger, lock, undo });
  } catch (err) {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (cleanupError) {
        logger.warn({ err: cleanupError }, 'cleaning up after a failed start failed');
      }
    }
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    throw err;
  }
}

async function startLocked(
  config: Config, overrides: AirlockOverrides,
  { secrets, logger, lock, undo }: { secrets: SecretRegistry; logger: Logger; lock: DataDirLock; undo: Array<() => unknown> },
): Promise<Airlock> {
  const networks = new Set(Object.values(config.projects).map((project) => project.sandbox?.network ?? 'allow'));
  const setup = await startSandbox(config.sandbox, { dataDir: config.dataDir, configPath: config.configPath, logger, networks });
  const { sandbox } = setup;
  // The store runs on a thread of its own, so the event loop that serves HTTP does not run SQLite.
  const store = await ThreadedStore.open(join(config.dataDir, 'airlock.db'), {
    backgroundCheckpoints: true,
    onFailure: (err) => logger.fatal({ err }, 'the store thread died: every request and task that needs the store fails until Airlock is restarted'),
  });
  undo.push(() => store.close());
  for (const project of Object.keys(config.projects)) await store.ensureProject(project);

  const opened = await openWorkspaces(join(config.dataDir, 'workspaces'), config.sandbox.workspaceLimitMb, setup.owner);
  const { workspaces } = opened;
  undo.push(() => workspaces.close());
  if (opened.warning) logger.warn(`sandbox limits: ${opened.warning}`);
  else if (config.sandbox.workspaceLimitMb > 0) logger.info({ workspaceLimitMb: config.sandbox.workspaceLimitMb }, 'each task workspace is a filesystem of its own, bounded by the workspace limit');
  const taskWarning = joinWarnings(setup.taskWarning, opened.warning && `Sandbox limits: ${opened.warning}.`);
  const uploads = new Uploads(join(config.dataDir, 'tmp', 'uploads'), config.uploads);
  await uploads.init();

  const bus = new InProcessEventBus();
  const events = new EventLog(store, bus);
  const pool = new McpPool({ maxConnections: config.mcp.maxConnections, idleTtlMs: config.mcp.idleTtlMs });
  const toolRouter = overrides.toolRouter ?? new McpToolRouter({ pool, projects: config.projects, poolConfig: config.mcp, builtin: workspaceServerLauncher(), sandbox, logger });
  undo.push(() => toolRouter.close());
  const modelFor = overrides.modelFor ?? modelFactory(config, logger);
  const sessions = new SessionRegistry(logger, config.sessionIdleMs);
  const gate = new ApprovalGate(store, (taskId) => sessions.get(taskId)?.scrubber ?? Scrubber.NONE);
  const inputs = new InputRequests(store);
  const runner = new TaskRunner({
    store, events, tools: toolRouter, modelFor, gate, inputs, logger, maxTurns: config.maxTurns,
    systemPromptFor: (task) => systemPrompt(config, task),
    workspaceFor: (taskId) => workspaces.ensure(taskId),
    workspaceDirOf: (taskId) => workspaces.dir(taskId),
    projectFor: (projectId) => config.projects[projectId] ?? {},
    runWarningFor: (projectId) => (taskWarning && startsProcesses(config.projects[projectId] ?? {}) ? taskWarning : undefined),
  });
  const queue = new InProcessTaskQueue(config.concurrency);
  const tasks = new TaskService({ store, events, queue, runner, sessions, gate, inputs, workspaces, logger });
  const streams = new TaskStreams({ store, bus, service: tasks });
  const artifacts = new TaskArtifacts(tasks, workspaces);
  const { retentionMs, sweepIntervalMs } = config.workspaces;
  const retention = retentionMs === undefined ? undefined : new WorkspaceRetention({ store, workspaces, retentionMs, sweepIntervalMs, logger });

  const readiness = new Readiness({ store, sandbox: setup, logger });
  const app = buildApp({
    store, tasks, streams, artifacts, uploads, logger, jwtSecret: config.jwtSecret, projects: Object.keys(config.projects), bodyLimitBytes: config.bodyLimitBytes, heartbeatIntervalMs: config.heartbeatIntervalMs,
    rateLimit: config.rateLimit,
    health: () => ({ runningTasks: queue.running, queuedTasks: queue.queued, mcpConnections: pool.stats().open }),
    readiness: () => readiness.check(),
  });
  const startup = new StartupGate();
  const server = createServer(startup.wrap(app.callback()));
  server.keepAliveTimeout = 65_000;
  await listen(server, config.port, config.host);
  undo.push(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));

  // Only now that it listens: a start that cannot listen makes no key nobody sees, and leaves the
  // tasks of the process before it as they were.
  const createdApiKey = await bootstrapKeys(store, config, logger, overrides.announce);
  undo.push(() => tasks.shutdown(0));
  const recovered = await tasks.recoverInterrupted();
  if (recovered.failed) logger.warn({ count: recovered.failed }, 'tasks left running by a previous process were marked failed');
  if (recovered.waiting) logger.info({ count: recovered.waiting }, 'tasks left waiting for approval by a previous process still wait, and resume once decided');
  startup.open();
  retention?.start();
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  logger.info({ url, dataDir: config.dataDir, pid: process.pid, model: config.model.provider === 'scripted' ? 'scripted' : `anthropic:${config.model.name}`, concurrency: config.concurrency }, 'Airlock is listening');
  if (config.model.provider === 'scripted') logger.warn('No ANTHROPIC_API_KEY is set: tasks use the scripted model (/call and /reply lines)');

  let closing: Promise<void> | undefined;
  const close = () => (closing ??= (async () => {
    logger.info('shutting down');
    await retention?.stop();
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    await tasks.shutdown(config.shutdownGraceMs);
    // Streams of finished tasks have ended; idle keep-alive sockets would hold close() open.
    server.closeIdleConnections();
    const forced = setTimeout(() => server.closeAllConnections(), 2_000);
    await stopped;
    clearTimeout(forced);
    await toolRouter.close(); // the MCP router closes the pool it was given
    await workspaces.close();
    await store.close();
    lock.release();
    logger.info('stopped');
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  })());

  return { server, url, store, tasks, logger, secrets, pool, createdApiKey, close };
}

/**
 * The built-in workspace MCP server: its compiled server.js in the build, else server.ts through tsx.
 * tsx is named by its resolved URL because the server's cwd is the task workspace, where
 * `--import tsx` would not resolve.
 */
export function workspaceServerLauncher(): BuiltinLauncher {
  const server = ownModulePath('mcp-servers/workspace/server.ts');
  if (RUNS_FROM_BUILD) return (workspacePath) => ({ command: process.execPath, args: [server, workspacePath] });
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return (workspacePath) => ({ command: process.execPath, args: ['--import', tsx, server, workspacePath] });
}

/** The warnings that apply, as one message; undefined when there is none. */
function joinWarnings(...warnings: Array<string | undefined>): string | undefined {
  const present = warnings.filter((warning): warning is string => Boolean(warning));
  return present.length ? present.join(' ') : undefined;
}

/** Whether a project's tasks run processes of their own: the built-in tools or a stdio MCP server. */
function startsProcesses(project: ProjectConfig): boolean {
  return project.builtinTools !== false || Object.values(project.mcpServers ?? {}).some((server) => server.type === 'stdio' && server.enabled !== false);
}

/** The whole system prompt of a task: Airlock's, the project's, then the task's own. */
export function systemPrompt(config: Config, task: TaskRecord): string {
  const parts = [BASE_SYSTEM_PROMPT, config.projects[task.projectId]?.systemPrompt, task.systemPrompt];
  return parts.filter((part): part is string => Boolean(part && part.trim())).join('\n\n');
}

function modelFactory(config: Config, logger: Logger): (projectId: string) => ModelClient {
  const cache = new Map<string, ModelClient>();
  const scripted = new ScriptedModelClient();
  const sdk = sdkLogging(logger);
  return (projectId) => {
    const model = projectModel(config, projectId);
    if (model.provider === 'scripted' || !model.apiKey) return scripted;
    let client = cache.get(projectId);
    if (!client) {
      client = new AnthropicModelClient({
        apiKey: model.apiKey, baseURL: model.baseURL, model: model.name, maxTokens: model.maxTokens,
        thinkingBudgetTokens: model.thinkingBudgetTokens, maxRetries: model.maxRetries,
        logger: sdk.logger, warnings: sdk.warnings,
      });
      cache.set(projectId, client);
    }
    return client;
  };
}

// First start: the default project gets a key, printed once; or the bootstrap key is registered.
async function bootstrapKeys(store: Store, config: Config, logger: Logger, announce: (text: string) => void = (text) => void process.stdout.write(text)): Promise<string | undefined> {
  if (config.bootstrapApiKey) {
    if (!(await store.findApiKeyByHash(hashApiKey(config.bootstrapApiKey)))) {
      await createApiKey(store, { projectId: DEFAULT_PROJECT, name: 'bootstrap', key: config.bootstrapApiKey });
      logger.info('registered AIRLOCK_BOOTSTRAP_API_KEY for the default project');
    }
    return undefined;
  }
  if ((await store.countApiKeys()) > 0) return undefined;
  const { key, record } = await createApiKey(store, { projectId: DEFAULT_PROJECT, name: 'first key' });
  // Printed outside the log on purpose: the key is shown this once and must not sit in log files.
  announce(`\nAirlock created an API key for the "default" project (id ${record.id}). It is shown only now:\n\n  ${key}\n\n`);
  return key;
}
