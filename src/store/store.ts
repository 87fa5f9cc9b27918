/** Every status a task can be in (API.md section 4). */
export type TaskStatus = 'pending' | 'running' | 'awaiting_approval' | 'completed' | 'failed' | 'cancelled';

export const LIVE_STATUSES: readonly TaskStatus[] = ['pending', 'running', 'awaiting_approval'];
export const FINISHED_STATUSES: readonly TaskStatus[] = ['completed', 'failed', 'cancelled'];

export function isLive(status: TaskStatus): boolean {
  return LIVE_STATUSES.includes(status);
}

/** A failed task's error, as API.md shows it. */
export interface TaskError {
  code: string;
  message: string;
}

/** Token totals of a task across all its turns. */
export interface TaskUsage {
  inputTokens: number;
  outputTokens: number;
  turns: number;
}

/** A task as stored. Secrets are never part of it. */
export interface TaskRecord {
  id: string;
  projectId: string;
  apiKeyId: string | null;
  endUserId: string | null;
  /** Who created it, for people: the key's name then (null for a key without one), or the end user's id. */
  username: string | null;
  sessionId: string;
  conversationId: string;
  status: TaskStatus;
  message: string;
  systemPrompt: string | null;
  showInHistory: boolean;
  autoExecute: boolean;
  env: Record<string, string> | null;
  error: TaskError | null;
  usage: TaskUsage;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  lastActivityAt: string;
  /** Messages as history shows them: user messages and one assistant message per run. */
  messageCount: number;
  /** The sequence of the last event before the current run began. */
  runStartSeq: number;
  /**
   * The names (never the values) of the secrets the task was given. Secrets live only in memory, so
   * a run resumed by another process can tell that they are missing and say so.
   */
  secretKeys: string[];
}

/** One tool call as recorded on an assistant message. */
export interface ToolCallRecord {
  callId: string;
  toolName: string;
  server?: string;
  status: 'awaiting_approval' | 'executing' | 'success' | 'error' | 'cancelled';
  args: Record<string, unknown>;
  output?: string;
  /** The approval that let it run (or declined it), when it needed one. */
  approvalId?: string;
}

export interface Thought {
  subject: string;
  description: string;
}

export interface AttachedFile {
  name: string;
  path: string;
}

/** A message of a task's conversation, as history shows it. */
export interface MessageRecord {
  id: string;
  taskId: string;
  role: 'user' | 'assistant';
  content: string;
  createdAt: string;
  attachedFiles?: AttachedFile[];
  thoughts?: Thought[];
  toolCalls?: ToolCallRecord[];
  /** The task's last event sequence when the message was stored. */
  afterSeq: number;
}

/** A stored stream event. */
export interface EventRecord {
  taskId: string;
  seq: number;
  type: string;
  data: Record<string, unknown>;
  createdAt: string;
}

/** Where an approval stands: waiting, or decided once and for all. */
export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'expired' | 'cancelled';
export type ApprovalOutcome = 'proceed_once' | 'proceed_always' | 'cancel';

/** One tool call that waited for a person: the audit trail of API.md section 7. */
export interface ApprovalRecord {
  id: string;
  taskId: string;
  callId: string;
  /** The name the model used. */
  toolName: string;
  server: string;
  tool: string;
  /** The arguments asked about (scrubbed). */
  args: Record<string, unknown>;
  /** SHA-256 of server + tool + arguments: what the decision is bound to. */
  digest: string;
  status: ApprovalStatus;
  outcome: ApprovalOutcome | null;
  reason: string | null;
  /** `key:<id>` or `user:<id>` of whoever decided; `system` for expiry and cancels. */
  decidedBy: string | null;
  /** True when the decision replaced the arguments. */
  argsEdited: boolean;
  /** The arguments the call ran with instead (scrubbed), when they were edited. */
  editedArgs: Record<string, unknown> | null;
  /** Why the gate asked: the matching rule's reason, or `autoExecute is false`. */
  policy: string | null;
  requestedAt: string;
  decidedAt: string | null;
  expiresAt: string | null;
  /** The tool's input schema when it was asked, to check edited arguments even after a restart. */
  inputSchema: Record<string, unknown> | null;
}

export type ApprovalDecision = Pick<ApprovalRecord, 'status' | 'outcome' | 'reason' | 'decidedBy' | 'argsEdited' | 'editedArgs' | 'decidedAt'>;

export interface ApiKeyRecord {
  id: string;
  projectId: string;
  name: string | null;
  /** SHA-256 of the whole key, hex. The key itself is never stored. */
  keyHash: string;
  /** The first characters of the key, for people to recognise it in lists. */
  keyPrefix: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

/** Where a page of a listing ended: the last task's activity stamp and the store's creation number of it (the tie-break). */
export interface TaskListPosition {
  lastActivityAt: string;
  no: number;
}

/** A page of a project's tasks; with neither apiKeyId nor endUserId, of the whole project. */
export interface TaskListQuery {
  projectId: string;
  /** Only the tasks created with this key. */
  apiKeyId?: string;
  /** Only this end user's tasks (JWT callers). Not together with apiKeyId. */
  endUserId?: string;
  /** Tasks with showInHistory false are listed only when this is true. */
  includeHidden: boolean;
  status?: TaskStatus;
  limit: number;
  /** Tasks to skip: from the start, or from `after` when it is given. */
  offset: number;
  /** Only the tasks after this position, as a previous page's `next` gave it. */
  after?: TaskListPosition;
}

/** A page of a listing: the tasks, the number of all tasks the query matches, and where the next page starts (null on the last). */
export interface TaskListPage {
  tasks: TaskRecord[];
  total: number;
  next: TaskListPosition | null;
}

export type TaskPatch = Partial<Pick<TaskRecord, 'status' | 'error' | 'usage' | 'startedAt' | 'completedAt' | 'lastActivityAt' | 'sessionId' | 'env' | 'runStartSeq' | 'secretKeys'>>;

/** What a stream needs at connect, read at one instant. */
export interface TaskSnapshot {
  task: TaskRecord;
  messages: MessageRecord[];
  lastSeq: number;
}

/**
 * Where Airlock keeps tasks, messages, events and keys. Async so that a networked database can
 * implement it; every method is atomic on its own. Writes are applied in the order they are called,
 * also when a caller does not wait for one before making the next (the runner relies on it), and a
 * write's promise resolves only once it is durable.
 */
export interface Store {
  /** Creates a project row if it is not there yet. */
  ensureProject(id: string): Promise<void>;
  createApiKey(key: ApiKeyRecord): Promise<void>;
  findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined>;
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** Marks a key revoked; false when there is no such key. */
  revokeApiKey(id: string, at: string): Promise<boolean>;
  countApiKeys(): Promise<number>;

  /**
   * Stores a new task; with `firstMessage`, also its first message (position 0, counted in
   * messageCount) in the same atomic write, so that the task is never seen without it.
   */
  createTask(task: TaskRecord, firstMessage?: Omit<MessageRecord, 'taskId' | 'afterSeq'>): Promise<void>;
  getTask(id: string): Promise<TaskRecord | undefined>;
  /**
   * Newest activity first (ties: the task created last first), with the count of all tasks the
   * query matches, read at the same instant as the page.
   */
  listTasks(query: TaskListQuery): Promise<TaskListPage>;
  updateTask(id: string, patch: TaskPatch): Promise<void>;
  /**
   * Changes the status only when the current one is in `from`, stamping lastActivityAt (a status
   * change is activity, as a message is; single events are not); returns whether it did. The guard
   * is what makes two concurrent follow-ups or cancels decide once.
   */
  transitionTask(id: string, from: readonly TaskStatus[], patch: TaskPatch & { status: TaskStatus }): Promise<boolean>;
  findTasksByStatus(statuses: readonly TaskStatus[]): Promise<TaskRecord[]>;

  /**
   * Appends a message (one model turn, for the assistant), stamps its afterSeq and counts it on the
   * task as history shows messages: a run's consecutive assistant records count once.
   */
  appendMessage(message: Omit<MessageRecord, 'afterSeq'>): Promise<MessageRecord>;
  listMessages(taskId: string): Promise<MessageRecord[]>;

  /**
   * Appends an event with the task's next sequence number, resolving once it is durable. Sequence
   * numbers follow the order of the calls, even when a caller does not wait for one append before
   * making the next (the runner streams deltas that way).
   */
  appendEvent(taskId: string, type: string, data: Record<string, unknown>): Promise<EventRecord>;
  /** Events with seq > afterSeq (and <= untilSeq when given), oldest first, at most `limit`. */
  listEvents(taskId: string, afterSeq: number, limit: number, untilSeq?: number): Promise<EventRecord[]>;
  snapshot(taskId: string): Promise<TaskSnapshot | undefined>;

  createApproval(approval: ApprovalRecord): Promise<void>;
  /** Records a decision if the approval is still pending; false when it was decided already (exactly once). */
  decideApproval(taskId: string, callId: string, decision: ApprovalDecision): Promise<boolean>;
  getApproval(taskId: string, callId: string): Promise<ApprovalRecord | undefined>;
  /** A task's approvals, oldest first. */
  listApprovals(taskId: string): Promise<ApprovalRecord[]>;

  /** Resolves once the database has answered a read of its own tables (readiness); rejects with why not. */
  ping(): Promise<void>;

  close(): Promise<void>;
}
