import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { ModelMessage } from '../../model/modelClient.js';
import { Scrubber } from '../security/scrubber.js';
import { taskLog } from '../events/taskLog.js';
import type { TaskLog } from '../events/taskLog.js';
import type { ToolSession } from '../tools/toolRouter.js';

/**
 * What a task holds in memory while its session lives: its secrets (never anywhere else), the
 * model's conversation and its open tools. Losing it (expiry, restart) loses only the secrets:
 * the conversation is rebuilt from the store.
 */
export class TaskSession {
  private secrets: Record<string, string> = {};
  /** The scrubber of the current secrets. */
  scrubber = Scrubber.NONE;
  /** The task's log: its lines scrubbed of its secrets (and no other line). */
  log: TaskLog;
  /** The model's conversation; null until loaded from the store. */
  conversation: ModelMessage[] | null = null;
  /** The open tool session, if any. */
  tools: ToolSession | null = null;
  /** Tool names a person approved with proceed_always in this task. */
  readonly alwaysAllowed = new Set<string>();
  expiryTimer: NodeJS.Timeout | null = null;

  constructor(readonly taskId: string, private readonly logger: Logger, readonly sessionId: string = randomUUID()) {
    this.log = logger;
  }

  /** Adds (or replaces) secrets; true when any value changed. */
  addSecrets(secrets: Record<string, string>): boolean {
    const changed = Object.entries(secrets).some(([key, value]) => this.secrets[key] !== value);
    if (!changed) return false;
    this.secrets = { ...this.secrets, ...secrets };
    this.scrubber = new Scrubber(this.secrets);
    this.log = taskLog(this.logger, this.scrubber);
    return true;
  }

  /** env and secrets as one map, secrets winning (API.md section 3). */
  variables(env: Record<string, string> | null): Record<string, string> {
    return { ...(env ?? {}), ...this.secrets };
  }

  secretKeys(): ReadonlySet<string> {
    return new Set(Object.keys(this.secrets));
  }

  /** Closes the tools and forgets the secrets. */
  async close(): Promise<void> {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    const tools = this.tools;
    this.tools = null;
    this.conversation = null;
    try {
      await tools?.close();
    } finally {
      this.secrets = {};
      this.scrubber = Scrubber.NONE;
      this.log = this.logger;
    }
  }
}

/** The live sessions of this process, closed after `idleMs` without a run. */
export class SessionRegistry {
  private readonly sessions = new Map<string, TaskSession>();

  constructor(private readonly logger: Logger, private readonly idleMs: number) {}

  get(taskId: string): TaskSession | undefined {
    return this.sessions.get(taskId);
  }

  /** The task's session, created when there is none (with `sessionId` when given). */
  open(taskId: string, sessionId?: string): TaskSession {
    let session = this.sessions.get(taskId);
    if (!session) this.sessions.set(taskId, (session = new TaskSession(taskId, this.logger, sessionId)));
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = null;
    return session;
  }

  /** Starts the idle clock of a session whose run ended. */
  idle(taskId: string): void {
    const session = this.sessions.get(taskId);
    if (!session) return;
    if (session.expiryTimer) clearTimeout(session.expiryTimer);
    session.expiryTimer = setTimeout(() => void this.close(taskId), this.idleMs);
    session.expiryTimer.unref();
  }

  async close(taskId: string): Promise<void> {
    const session = this.sessions.get(taskId);
    if (!session) return;
    this.sessions.delete(taskId);
    await session.close();
  }

  async closeAll(): Promise<void> {
    await Promise.allSettled([...this.sessions.keys()].map((taskId) => this.close(taskId)));
  }

  get size(): number {
    return this.sessions.size;
  }
}
