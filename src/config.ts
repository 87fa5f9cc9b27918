import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { hiddenPathProblems } from './configPaths.js';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import configSchema from '../schema/airlock.config.schema.json' with { type: 'json' };

// ajv-formats is CommonJS with a default export that NodeNext sees one level down.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

export type ModelProvider = 'anthropic' | 'scripted';

/** How tasks talk to a model. */
export interface ModelConfig {
  provider: ModelProvider;
  /** The Anthropic API key; absent for the scripted model. Never logged. */
  apiKey?: string;
  baseURL?: string;
  name: string;
  maxTokens: number;
  thinkingBudgetTokens?: number;
  maxRetries: number;
}

/** One MCP server of a project (API.md section 8); strings may hold {{mcp.KEY}} templates. */
export interface McpServerConfig {
  type: 'http' | 'sse' | 'stdio';
  url?: string;
  headers?: Record<string, string>;
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  enabled?: boolean;
  required?: boolean;
  /** Connect and listing timeout, ms. */
  timeout?: number;
  /** One tool call's timeout, ms. */
  toolTimeout?: number;
  protocol?: 'auto' | 'legacy' | '2026-07-28';
  includeTools?: string[];
  excludeTools?: string[];
  /** stdio: host paths shown read-only to this server besides what the sandbox finds from its command and args. */
  sandbox?: { readOnlyPaths?: string[] };
}

/** One project's configuration, from the config file. */
export interface ProjectConfig {
  systemPrompt?: string;
  model?: Partial<Omit<ModelConfig, 'apiKey'>>;
  mcpServers?: Record<string, McpServerConfig>;
  /** The built-in workspace tools; default true. */
  builtinTools?: boolean;
  /** Ordered approval rules (API.md section 7). */
  toolPolicies?: ToolPolicyRule[];
  /** Treat readOnlyHint tools as allowed when no rule matches. */
  trustAnnotations?: boolean;
  /** Ordered rules for MCP servers' sampling requests (answered by the task's model). */
  samplingPolicies?: SamplingPolicyRule[];
  /** Pending approvals and input requests are cancelled as expired after this long. */
  approvalTimeoutMs?: number;
  /** How the project's task processes are isolated, beyond the process-wide `sandbox` settings. */
  sandbox?: { network?: NetworkPolicy };
}

/** How tasks' processes are isolated: bubblewrap when it works (`auto`), always (`bwrap`), or never (`none`). */
export type SandboxMode = 'auto' | 'bwrap' | 'none';

/** Whether a project's sandboxed processes may use the network (`deny`: loopback only, their own). */
export type NetworkPolicy = 'allow' | 'deny';

/** The process-wide sandbox settings (docs/configuration.md, "Sandbox"). */
export interface SandboxConfig {
  mode: SandboxMode;
  /** The bubblewrap program: an absolute path, or a name looked up in Airlock's PATH. */
  bwrapPath: string;
  /** Memory of one sandboxed server process with everything it starts, in MiB; 0: no limit. */
  memoryLimitMb: number;
  /** Processes and threads of one sandboxed server process with everything it starts; 0: no limit. */
  maxProcesses: number;
  /** Absolute host paths shown read-only inside every sandbox (programs of stdio servers and their data). */
  readOnlyPaths: string[];
  /** The host user and group sandboxed processes run as when Airlock runs as root (never root itself). */
  uid: number;
  gid: number;
  /** The most a task's workspace may hold, in MiB, enforced by a filesystem of its own; 0: no limit. */
  workspaceLimitMb: number;
}

/** One rule of a project's tool policy. */
export interface ToolPolicyRule {
  /** Server name glob; absent matches every server. */
  server?: string;
  /** The server's tool name, glob. */
  tool: string;
  decision: 'allow' | 'ask' | 'deny';
  reason?: string;
}

/** One rule of a project's sampling policy: may this server have the task's model answer it? */
export interface SamplingPolicyRule {
  /** Server name glob; absent matches every server. */
  server?: string;
  decision: 'allow' | 'ask' | 'deny';
  reason?: string;
}

/** Settings of the MCP client pool. */
export interface McpPoolConfig {
  maxConnections: number;
  idleTtlMs: number;
  toolResultLimitChars: number;
}

/** How far one uploaded archive may expand (config `uploads.archives`). */
export interface ArchiveLimits {
  /** Bytes of file content, all entries together. */
  maxExpandedBytes: number;
  /** Entries (files and directories). */
  maxEntries: number;
  /** Expanded bytes per byte of archive, checked once the archive has expanded past 1 MiB. */
  maxCompressionRatio: number;
}

/** Limits on the files of one create or follow-up request (config `uploads`). */
export interface UploadLimits {
  /** Files per request. */
  maxFiles: number;
  /** Bytes per file, counted while it streams in. */
  maxFileBytes: number;
  archives: ArchiveLimits;
}

/** Task workspaces (config `workspaces`). */
export interface WorkspacesConfig {
  /** A finished task's workspace is deleted this long after it finished; absent: kept forever. */
  retentionMs?: number;
  /** How often the retention sweep runs. */
  sweepIntervalMs: number;
}

const DEFAULT_MAX_UPLOAD_FILES = 20;
const DEFAULT_MAX_UPLOAD_FILE_BYTES = 50 * 1024 * 1024;

/** The whole validated configuration of one Airlock process. */
export interface Config {
  host: string;
  port: number;
  dataDir: string;
  logLevel: string;
  bodyLimitBytes: number;
  heartbeatIntervalMs: number;
  shutdownGraceMs: number;
  /** Per-credential request limit on the API; none when absent. */
  rateLimit?: { requestsPerMinute: number; burst?: number };
  concurrency: number;
  maxTurns: number;
  /** How long a task's in-memory session outlives its last run. */
  sessionIdleMs: number;
  model: ModelConfig;
  /** A known API key registered (hashed) for the default project at start-up. */
  bootstrapApiKey?: string;
  /** HS256 secret for widget JWTs; JWTs are refused without it. */
  jwtSecret?: string;
  projects: Record<string, ProjectConfig>;
  mcp: McpPoolConfig;
  sandbox: SandboxConfig;
  uploads: UploadLimits;
  workspaces: WorkspacesConfig;
  /** The config file that was read, if any. */
  configPath?: string;
}

export const DEFAULT_PROJECT = 'default';
export const DEFAULT_MODEL = 'claude-sonnet-5-5';
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 15_000;
export const DEFAULT_SANDBOX_MEMORY_LIMIT_MB = 2048;
export const DEFAULT_SANDBOX_MAX_PROCESSES = 512;
/** The host uid (and gid) of sandboxed processes when Airlock runs as root: not a user of Debian's allocations. */
export const DEFAULT_SANDBOX_UID = 61000;
export const DEFAULT_WORKSPACE_LIMIT_MB = 1024;
/** The smallest workspace filesystem worth making (its own metadata takes about 1 MiB). */
export const MIN_WORKSPACE_LIMIT_MB = 16;
const SANDBOX_MODES: readonly SandboxMode[] = ['auto', 'bwrap', 'none'];
const API_KEY_PATTERN = /^airlock_[0-9a-f]{64}$/;

/** Start-up failed: every problem found, not only the first. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

interface FileConfig {
  server?: { host?: string; port?: number; bodyLimitBytes?: number; heartbeatIntervalMs?: number; shutdownGraceMs?: number; rateLimit?: { requestsPerMinute: number; burst?: number } };
  dataDir?: string;
  logLevel?: string;
  tasks?: { concurrency?: number; maxTurns?: number; sessionIdleMs?: number };
  model?: Partial<Omit<ModelConfig, 'apiKey'>>;
  projects?: Record<string, ProjectConfig>;
  mcp?: Partial<McpPoolConfig>;
  sandbox?: Partial<SandboxConfig>;
  uploads?: Partial<Omit<UploadLimits, 'archives'>> & { archives?: Partial<ArchiveLimits> };
  workspaces?: Partial<WorkspacesConfig>;
}

// strictRequired is off so that if/then can require fields that only the enclosing schema defines.
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
addFormats(ajv);
const validateFile = ajv.compile<FileConfig>(configSchema);

/** Settings given on the command line (`airlock serve --port …`): each wins over the environment and the file. */
export interface ConfigFlags {
  port?: string;
  host?: string;
  dataDir?: string;
}

/**
 * Builds the Config from the command line's flags, the environment and the optional file named by
 * AIRLOCK_CONFIG, in that order of precedence.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd(), flags: ConfigFlags = {}): Config {
  const problems: string[] = [];
  let file: FileConfig = {};
  const configPath = env.AIRLOCK_CONFIG ? resolve(cwd, env.AIRLOCK_CONFIG) : undefined;
  if (configPath) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(configPath, 'utf8'));
      if (validateFile(parsed)) file = parsed;
      // An "if" error only repeats the error of its "then" branch.
      else for (const e of (validateFile.errors ?? []).filter((error) => error.keyword !== 'if')) problems.push(`${configPath}: ${e.instancePath || '/'} ${e.message}${describeParams(e.params)}`);
    } catch (err) {
      problems.push(`${configPath}: ${(err as Error).message}`);
    }
  }

  /** `raw` as an integer from min to max, or a problem naming the setting (`PORT`, `--port`). */
  const integer = (setting: string, raw: string, min: number, max: number): number | undefined => {
    const value = /^\d{1,15}$/.test(raw) ? Number(raw) : NaN;
    if (Number.isInteger(value) && value >= min && value <= max) return value;
    problems.push(`${setting} must be an integer from ${min} to ${max} (got "${raw}")`);
    return undefined;
  };
  const int = (name: string, min: number, max: number): number | undefined => {
    const raw = env[name];
    return raw === undefined || raw === '' ? undefined : integer(name, raw, min, max);
  };

  for (const [flag, value] of [['--port', flags.port], ['--host', flags.host], ['--data-dir', flags.dataDir]] as const) if (value === '') problems.push(`${flag} needs a value`);
  const port = (flags.port ? integer('--port', flags.port, 0, 65535) : int('PORT', 0, 65535)) ?? file.server?.port ?? 8080;
  const concurrency = int('AIRLOCK_CONCURRENCY', 1, 10_000) ?? file.tasks?.concurrency ?? 8;
  const heartbeatIntervalMs = int('AIRLOCK_HEARTBEAT_MS', 100, 3_600_000) ?? file.server?.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const logLevel = env.AIRLOCK_LOG_LEVEL || file.logLevel || 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) problems.push(`AIRLOCK_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "${logLevel}")`);

  const bootstrapApiKey = env.AIRLOCK_BOOTSTRAP_API_KEY || undefined;
  // The message names the rule, never the value: it may be a real key with a typo.
  if (bootstrapApiKey && !API_KEY_PATTERN.test(bootstrapApiKey)) problems.push('AIRLOCK_BOOTSTRAP_API_KEY must be "airlock_" followed by 64 lowercase hex characters');
  const jwtSecret = env.AIRLOCK_JWT_SECRET || undefined;
  if (jwtSecret && jwtSecret.length < 32) problems.push('AIRLOCK_JWT_SECRET must be at least 32 characters');

  const apiKey = env.ANTHROPIC_API_KEY || undefined;
  const baseURL = env.ANTHROPIC_BASE_URL || file.model?.baseURL;
  if (env.ANTHROPIC_BASE_URL && !isHttpUrl(env.ANTHROPIC_BASE_URL)) problems.push(`ANTHROPIC_BASE_URL must be an http(s) URL`);
  const provider: ModelProvider = file.model?.provider ?? (apiKey ? 'anthropic' : 'scripted');
  if (provider === 'anthropic' && !apiKey) problems.push('model.provider is "anthropic" but ANTHROPIC_API_KEY is not set');

  const sandboxMode = (env.AIRLOCK_SANDBOX_MODE || file.sandbox?.mode || 'auto') as SandboxMode;
  if (env.AIRLOCK_SANDBOX_MODE && !SANDBOX_MODES.includes(sandboxMode)) problems.push(`AIRLOCK_SANDBOX_MODE must be one of ${SANDBOX_MODES.join(', ')} (got "${sandboxMode}")`);
  const limitMb = file.sandbox?.workspaceLimitMb;
  if (limitMb !== undefined && limitMb > 0 && limitMb < MIN_WORKSPACE_LIMIT_MB) problems.push(`sandbox.workspaceLimitMb must be 0 (no limit) or at least ${MIN_WORKSPACE_LIMIT_MB} (got ${limitMb})`);
  for (const path of file.sandbox?.readOnlyPaths ?? []) {
    if (!isAbsolute(path) || resolve(path) === '/') problems.push(`sandbox.readOnlyPaths: "${path}" must be an absolute path other than /`);
  }

  const projects: Record<string, ProjectConfig> = { [DEFAULT_PROJECT]: {}, ...(file.projects ?? {}) };
  for (const [name, project] of Object.entries(projects)) {
    // Unsandboxed processes share the host's network: a deny could not be kept.
    if (project.sandbox?.network === 'deny' && sandboxMode === 'none') problems.push(`projects.${name}.sandbox.network is "deny", which needs the sandbox, but sandbox.mode is "none"`);
    if (project.model?.provider === 'anthropic' && !apiKey) problems.push(`projects.${name}.model.provider is "anthropic" but ANTHROPIC_API_KEY is not set`);
    for (const [serverName, server] of Object.entries(project.mcpServers ?? {})) {
      if (serverName === 'workspace') problems.push(`projects.${name}.mcpServers.workspace: the name "workspace" is the built-in server's; choose another`);
      problems.push(...mcpServerProblems(`projects.${name}.mcpServers.${serverName}`, server));
    }
  }

  const dataDir = resolve(cwd, flags.dataDir || env.AIRLOCK_DATA_DIR || file.dataDir || './data');
  problems.push(...hiddenPathProblems({ sandbox: file.sandbox, projects, dataDir, configPath }));
  if (problems.length) throw new ConfigError(problems);
  return {
    host: flags.host || env.HOST || file.server?.host || '127.0.0.1',
    port,
    dataDir,
    logLevel,
    bodyLimitBytes: file.server?.bodyLimitBytes ?? 1024 * 1024,
    heartbeatIntervalMs,
    shutdownGraceMs: file.server?.shutdownGraceMs ?? 10_000,
    rateLimit: file.server?.rateLimit,
    concurrency,
    maxTurns: file.tasks?.maxTurns ?? 50,
    sessionIdleMs: file.tasks?.sessionIdleMs ?? 15 * 60_000,
    model: {
      provider,
      apiKey,
      baseURL,
      name: env.AIRLOCK_MODEL || file.model?.name || DEFAULT_MODEL,
      maxTokens: file.model?.maxTokens ?? 8192,
      thinkingBudgetTokens: file.model?.thinkingBudgetTokens,
      maxRetries: file.model?.maxRetries ?? 4,
    },
    bootstrapApiKey,
    jwtSecret,
    projects,
    mcp: {
      maxConnections: file.mcp?.maxConnections ?? 200,
      idleTtlMs: file.mcp?.idleTtlMs ?? 300_000,
      toolResultLimitChars: file.mcp?.toolResultLimitChars ?? 200_000,
    },
    sandbox: {
      mode: sandboxMode,
      // A path is relative to the working directory; a bare name is looked up in PATH at start-up.
      bwrapPath: file.sandbox?.bwrapPath?.includes('/') ? resolve(cwd, file.sandbox.bwrapPath) : file.sandbox?.bwrapPath ?? 'bwrap',
      memoryLimitMb: file.sandbox?.memoryLimitMb ?? DEFAULT_SANDBOX_MEMORY_LIMIT_MB,
      maxProcesses: file.sandbox?.maxProcesses ?? DEFAULT_SANDBOX_MAX_PROCESSES,
      readOnlyPaths: (file.sandbox?.readOnlyPaths ?? []).map((path) => resolve(path)),
      uid: file.sandbox?.uid ?? DEFAULT_SANDBOX_UID,
      gid: file.sandbox?.gid ?? file.sandbox?.uid ?? DEFAULT_SANDBOX_UID,
      workspaceLimitMb: file.sandbox?.workspaceLimitMb ?? DEFAULT_WORKSPACE_LIMIT_MB,
    },
    uploads: {
      maxFiles: file.uploads?.maxFiles ?? DEFAULT_MAX_UPLOAD_FILES,
      maxFileBytes: file.uploads?.maxFileBytes ?? DEFAULT_MAX_UPLOAD_FILE_BYTES,
      archives: {
        maxExpandedBytes: file.uploads?.archives?.maxExpandedBytes ?? 1024 * 1024 * 1024,
        maxEntries: file.uploads?.archives?.maxEntries ?? 10_000,
        maxCompressionRatio: file.uploads?.archives?.maxCompressionRatio ?? 100,
      },
    },
    workspaces: {
      ...(file.workspaces?.retentionMs !== undefined ? { retentionMs: file.workspaces.retentionMs } : {}),
      sweepIntervalMs: file.workspaces?.sweepIntervalMs ?? 600_000,
    },
    configPath,
  };
}

/** The model settings of one project: the process default with the project's overrides. */
export function projectModel(config: Config, projectId: string): ModelConfig {
  return { ...config.model, ...(config.projects[projectId]?.model ?? {}), apiKey: config.model.apiKey };
}

/** Values of the configuration that must never reach a log. */
export function configSecrets(config: Config): Record<string, string> {
  const out: Record<string, string> = {};
  if (config.model.apiKey) out.ANTHROPIC_API_KEY = config.model.apiKey;
  if (config.bootstrapApiKey) out.AIRLOCK_BOOTSTRAP_API_KEY = config.bootstrapApiKey;
  if (config.jwtSecret) out.AIRLOCK_JWT_SECRET = config.jwtSecret;
  return out;
}

// What JSON Schema cannot say clearly: fields that belong to the other transport.
function mcpServerProblems(where: string, server: McpServerConfig): string[] {
  const problems: string[] = [];
  const foreign = server.type === 'stdio' ? (['url', 'headers'] as const) : (['command', 'args', 'env', 'cwd'] as const);
  for (const field of foreign) if (server[field] !== undefined) problems.push(`${where}.${field} does not apply to a ${server.type} server`);
  // Template values are URL-encoded in a url, so its scheme and host must be written out.
  if (server.url && !/^https?:\/\/[^/{}?#]+/i.test(server.url)) problems.push(`${where}.url must start with http:// or https:// and a host (templates are URL-encoded, so they fit in the path and query only)`);
  if (server.cwd !== undefined && (isAbsolute(server.cwd) || server.cwd.split(/[\\/]/).includes('..'))) problems.push(`${where}.cwd must be a path inside the task workspace (relative, without "..")`);
  if (server.type === 'sse' && server.protocol && server.protocol !== 'legacy') problems.push(`${where}.protocol: an sse server speaks the legacy protocol only`);
  return problems;
}

function describeParams(params: Record<string, unknown>): string {
  if ('additionalProperty' in params) return ` (unknown property "${String(params.additionalProperty)}")`;
  if ('allowedValues' in params) return ` (${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')})`;
  return '';
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
