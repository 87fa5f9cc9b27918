import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { LISTING_MIGRATION, listTaskRows } from './taskListing.js';
import { BACKSTOP_CHECKPOINT_PAGES, WalCheckpointer } from './walCheckpointer.js';
import type {
  ApiKeyRecord, ApprovalDecision, ApprovalRecord, EventRecord, MessageRecord, Store, TaskListPage, TaskListQuery, TaskPatch, TaskRecord, TaskSnapshot, TaskStatus,
} from './store.js';

export const SCHEMA_VERSION = 7;
/** How many tasks' event numbering SqliteStore keeps at hand (eventTails). */
const EVENT_TAILS = 4_096;

/** The columns of a task row in schema 6 besides its key `no` (migration 6 copies them; insertTask adds INSERTED_COLUMNS). */
const TASK_COLUMNS = `id, project_id, api_key_id, end_user_id, session_id, conversation_id, status, message, system_prompt,
  show_in_history, auto_execute, env, error, usage, created_at, started_at, completed_at, last_activity_at,
  message_count, run_start_seq, secret_keys`;

/** The columns of a task row since schema 7 besides its key `no`, in the order insertTask binds them. */
const INSERTED_COLUMNS = `${TASK_COLUMNS}, username`;

const MIGRATIONS = [
  `CREATE TABLE projects (id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
   CREATE TABLE api_keys (
     id TEXT PRIMARY KEY, project_id TEXT NOT NULL REFERENCES projects(id), name TEXT,
     key_hash TEXT NOT NULL UNIQUE, key_prefix TEXT NOT NULL,
     created_at TEXT NOT NULL, expires_at TEXT, revoked_at TEXT);
   CREATE TABLE tasks (
     id TEXT PRIMARY KEY, project_id TEXT NOT NULL, api_key_id TEXT, end_user_id TEXT,
     session_id TEXT NOT NULL, conversation_id TEXT NOT NULL, status TEXT NOT NULL,
     message TEXT NOT NULL, system_prompt TEXT, show_in_history INTEGER NOT NULL, auto_execute INTEGER NOT NULL,
     env TEXT, error TEXT, usage TEXT NOT NULL,
     created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT, last_activity_at TEXT NOT NULL,
     message_count INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0, run_start_seq INTEGER NOT NULL DEFAULT 0);
   CREATE INDEX tasks_by_activity ON tasks(project_id, last_activity_at DESC);
   CREATE INDEX tasks_by_status ON tasks(status);
   CREATE TABLE messages (
     id TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks(id), position INTEGER NOT NULL,
     role TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL,
     attached_files TEXT, thoughts TEXT, tool_calls TEXT, after_seq INTEGER NOT NULL);
   CREATE UNIQUE INDEX messages_by_task ON messages(task_id, position);
   CREATE TABLE events (
     task_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, created_at TEXT NOT NULL,
     PRIMARY KEY (task_id, seq)) WITHOUT ROWID;`,
  `CREATE TABLE approvals (
     id TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks(id), call_id TEXT NOT NULL,
     tool_name TEXT NOT NULL, server TEXT NOT NULL, tool TEXT NOT NULL, args TEXT NOT NULL, digest TEXT NOT NULL,
     status TEXT NOT NULL, outcome TEXT, reason TEXT, decided_by TEXT, args_edited INTEGER NOT NULL DEFAULT 0, edited_args TEXT, policy TEXT,
     requested_at TEXT NOT NULL, decided_at TEXT, expires_at TEXT);
   CREATE UNIQUE INDEX approvals_by_call ON approvals(task_id, call_id);`,
  // Approvals outlive the process: a resumed run needs the tool's schema and the task's secret names.
  `ALTER TABLE tasks ADD COLUMN secret_keys TEXT NOT NULL DEFAULT '[]';
   ALTER TABLE approvals ADD COLUMN input_schema TEXT;`,
  // A task's last sequence number is MAX(seq) of its events (the primary key finds it), so an event
  // is one INSERT and no longer rewrites its task's row.
  `ALTER TABLE tasks DROP COLUMN last_seq;`,
  // Messages keyed by (task_id, position), which every read uses: one b-tree instead of a table,
  // a unique index on the random id and one on (task_id, position). Ids stay random UUIDs.
  `CREATE TABLE messages_new (
     task_id TEXT NOT NULL REFERENCES tasks(id), position INTEGER NOT NULL, id TEXT NOT NULL,
     role TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL,
     attached_files TEXT, thoughts TEXT, tool_calls TEXT, after_seq INTEGER NOT NULL,
     PRIMARY KEY (task_id, position)) WITHOUT ROWID;
   INSERT INTO messages_new (task_id, position, id, role, content, created_at, attached_files, thoughts, tool_calls, after_seq)
     SELECT task_id, position, id, role, content, created_at, attached_files, thoughts, tool_calls, after_seq FROM messages;
   DROP TABLE messages;
   ALTER TABLE messages_new RENAME TO messages;`,
  // Tasks get an append-only integer key, numbered in created_at order, and messages and events are
  // keyed by it: a task's rows append at the right edge of each b-tree instead of dirtying random
  // pages (the public id is a random UUID v4). Only the unique index on tasks.id stays random.
  // Approvals keep their text task_id: they are written only when a person has to decide, and every
  // query of them starts from the public id. Run with foreign keys off (see migrate).
  `CREATE TABLE tasks_v6 (
     no INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, project_id TEXT NOT NULL, api_key_id TEXT, end_user_id TEXT,
     session_id TEXT NOT NULL, conversation_id TEXT NOT NULL, status TEXT NOT NULL,
     message TEXT NOT NULL, system_prompt TEXT, show_in_history INTEGER NOT NULL, auto_execute INTEGER NOT NULL,
     env TEXT, error TEXT, usage TEXT NOT NULL,
     created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT, last_activity_at TEXT NOT NULL,
     message_count INTEGER NOT NULL DEFAULT 0, run_start_seq INTEGER NOT NULL DEFAULT 0, secret_keys TEXT NOT NULL DEFAULT '[]');
   INSERT INTO tasks_v6 (${TASK_COLUMNS})
     SELECT ${TASK_COLUMNS} FROM tasks ORDER BY created_at, rowid;
   CREATE TABLE messages_v6 (
     task_no INTEGER NOT NULL REFERENCES tasks(no), position INTEGER NOT NULL, id TEXT NOT NULL,
     role TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL,
     attached_files TEXT, thoughts TEXT, tool_calls TEXT, after_seq INTEGER NOT NULL,
     PRIMARY KEY (task_no, position)) WITHOUT ROWID;
   INSERT INTO messages_v6 (task_no, position, id, role, content, created_at, attached_files, thoughts, tool_calls, after_seq)
     SELECT t.no, m.position, m.id, m.role, m.content, m.created_at, m.attached_files, m.thoughts, m.tool_calls, m.after_seq
     FROM messages m JOIN tasks_v6 t ON t.id = m.task_id ORDER BY t.no, m.position;
   CREATE TABLE events_v6 (
     task_no INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, created_at TEXT NOT NULL,
     PRIMARY KEY (task_no, seq)) WITHOUT ROWID;
   INSERT INTO events_v6 (task_no, seq, type, data, created_at)
     SELECT t.no, e.seq, e.type, e.data, e.created_at FROM events e JOIN tasks_v6 t ON t.id = e.task_id ORDER BY t.no, e.seq;
   DROP TABLE messages;
   DROP TABLE events;
   DROP TABLE tasks;
   ALTER TABLE tasks_v6 RENAME TO tasks;
   ALTER TABLE messages_v6 RENAME TO messages;
   ALTER TABLE events_v6 RENAME TO events;
   CREATE INDEX tasks_by_activity ON tasks(project_id, last_activity_at DESC);
   CREATE INDEX tasks_by_status ON tasks(status);`,
  LISTING_MIGRATION,
];

interface ApprovalRow {
  id: string; task_id: string; call_id: string; tool_name: string; server: string; tool: string; args: string; digest: string;
  status: ApprovalRecord['status']; outcome: ApprovalRecord['outcome']; reason: string | null; decided_by: string | null;
  args_edited: number; edited_args: string | null; policy: string | null; requested_at: string; decided_at: string | null; expires_at: string | null; input_schema: string | null;
}

interface TaskRow {
  no: number; id: string; project_id: string; api_key_id: string | null; end_user_id: string | null;
  session_id: string; conversation_id: string; status: TaskStatus; message: string; system_prompt: string | null;
  show_in_history: number; auto_execute: number; env: string | null; error: string | null; usage: string;
  created_at: string; started_at: string | null; completed_at: string | null; last_activity_at: string;
  message_count: number; run_start_seq: number; secret_keys: string; username: string | null;
}

interface MessageRow {
  id: string; role: 'user' | 'assistant'; content: string; created_at: string;
  attached_files: string | null; thoughts: string | null; tool_calls: string | null; after_seq: number;
}

/** A message's values as insertFirstMessage and insertMessage bind them after the task. */
type MessageValues = [id: string, role: 'user' | 'assistant', content: string, createdAt: string, attachedFiles: string | null, thoughts: string | null, toolCalls: string | null];

interface KeyRow {
  id: string; project_id: string; name: string | null; key_hash: string; key_prefix: string;
  created_at: string; expires_at: string | null; revoked_at: string | null;
}

const PATCH_COLUMNS: Record<keyof TaskPatch, string> = {
  status: 'status', error: 'error', usage: 'usage', startedAt: 'started_at', completedAt: 'completed_at',
  lastActivityAt: 'last_activity_at', sessionId: 'session_id', env: 'env', runStartSeq: 'run_start_seq', secretKeys: 'secret_keys',
};
const JSON_PATCHES = new Set<string>(['error', 'usage', 'env', 'secretKeys']);

/**
 * The embedded Store: one SQLite file in WAL mode. Writes are group-committed: every write made in
 * the same event-loop turn joins one transaction, committed at setImmediate, and each write's promise
 * resolves only after that commit. Concurrent tasks and requests thus share commits, while nothing
 * is fanned out or answered before it is durable.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly statements: ReturnType<SqliteStore['prepare']>;
  private readonly dynamic = new Map<string, Database.Statement>();
  /** The UPDATEs of updateTask and transitionTask, by the patch's keys and the guard's length. */
  private readonly patches = new Map<string, Database.Statement>();
  /**
   * Runs a read as one unit: a savepoint inside the open group transaction, else a transaction of
   * its own (a consistent read). Built once: building one costs more than running it.
   */
  private readonly atomically: <T>(fn: () => T) => T;
  private readonly checkpointer: WalCheckpointer | null = null;
  /**
   * The key and last event number of tasks this store appended events to lately, so that their next
   * event is a plain INSERT instead of one that looks the task up and finds its MAX(seq) first.
   * Emptied when a group is rolled back (its numbers were never stored); an entry that another
   * connection made stale shows as a primary-key conflict and is looked up again. A task row is
   * only ever deleted by createTask's undo, before it can have events; should tasks be deleted
   * otherwise, their entries must go with them (events have no foreign key to check the key).
   */
  private readonly eventTails = new Map<string, { no: number; seq: number }>();
  /** Settles when the open group transaction commits; null when none is open. */
  private group: { committed: Promise<void>; resolve: () => void; reject: (err: unknown) => void } | null = null;

  /**
   * Opens (creating if needed) the database at `path`; ':memory:' for a throwaway one.
   * `backgroundCheckpoints` moves WAL checkpoints to a worker thread (WalCheckpointer): for a
   * long-running server, not for a command that opens the store for a moment.
   */
  constructor(path: string, options: { backgroundCheckpoints?: boolean } = {}) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // NORMAL in WAL keeps every commit atomic and loses at most the last commits on power loss.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    // Off while migrating (better-sqlite3 turns them on by default; a no-op inside a transaction).
    this.db.pragma('foreign_keys = OFF');
    this.migrate();
    this.db.pragma('foreign_keys = ON');
    if (options.backgroundCheckpoints && path !== ':memory:') {
      this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
      // Without the worker, the connection checkpoints by itself again, as SQLite does by default.
      this.checkpointer = new WalCheckpointer(path, () => this.db.open && this.db.pragma('wal_autocheckpoint = 1000'));
    }
    this.statements = this.prepare();
    this.atomically = this.db.transaction((fn: () => unknown) => fn()) as <T>(fn: () => T) => T;
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) throw new Error(`database schema ${version} is newer than this Airlock (${SCHEMA_VERSION})`);
    if (version === SCHEMA_VERSION) return;
    // Runs before foreign keys are turned on: rebuilding a parent table must not check or delete its
    // children when the old one is dropped. The check at the end stands in for them.
    this.db.transaction(() => {
      for (let v = version; v < SCHEMA_VERSION; v++) this.db.exec(MIGRATIONS[v]!);
      const broken = this.db.pragma('foreign_key_check') as unknown[];
      if (broken.length) throw new Error(`migrating the database to schema ${SCHEMA_VERSION} broke ${broken.length} foreign keys`);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  private prepare() {
    const db = this.db;
    // A task's key from its public id: one lookup in the unique index on tasks.id.
    const taskNo = '(SELECT no FROM tasks WHERE id = ?)';
    const lastSeq = '(SELECT COALESCE(MAX(seq), 0) FROM events WHERE task_no = tasks.no)';
    const messageColumns = 'id, role, content, created_at, attached_files, thoughts, tool_calls, after_seq';
    return {
      begin: db.prepare('BEGIN IMMEDIATE'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      ensureProject: db.prepare('INSERT OR IGNORE INTO projects (id, created_at) VALUES (?, ?)'),
      insertKey: db.prepare(`INSERT INTO api_keys (id, project_id, name, key_hash, key_prefix, created_at, expires_at, revoked_at)
        VALUES (@id, @projectId, @name, @keyHash, @keyPrefix, @createdAt, @expiresAt, @revokedAt)`),
      keyByHash: db.prepare<[string], KeyRow>('SELECT * FROM api_keys WHERE key_hash = ?'),
      listKeys: db.prepare<[], KeyRow>('SELECT * FROM api_keys ORDER BY created_at, id'),
      revokeKey: db.prepare('UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?'),
      countKeys: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM api_keys'),
      ping: db.prepare('SELECT 1 FROM projects LIMIT 1'),
      insertTask: db.prepare<unknown[]>(`INSERT INTO tasks (${INSERTED_COLUMNS}) VALUES (${INSERTED_COLUMNS.split(',').map(() => '?').join(', ')})`),
      deleteTask: db.prepare<[number]>('DELETE FROM tasks WHERE no = ?'),
      task: db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE id = ?'),
      tasksByStatus: db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE status IN (SELECT value FROM json_each(?))'),
      // The task's next position and last sequence, and no row when the task does not exist.
      insertMessage: db.prepare<[...MessageValues, string], { task_no: number; position: number; after_seq: number }>(`INSERT INTO messages
        (task_no, position, id, role, content, created_at, attached_files, thoughts, tool_calls, after_seq)
        SELECT no, (SELECT COALESCE(MAX(position), -1) + 1 FROM messages WHERE task_no = tasks.no), ?, ?, ?, ?, ?, ?, ?, ${lastSeq}
        FROM tasks WHERE id = ? RETURNING task_no, position, after_seq`),
      roleAt: db.prepare<[number, number], { role: 'user' | 'assistant' }>('SELECT role FROM messages WHERE task_no = ? AND position = ?'),
      // A task's first message: position 0, before any event.
      insertFirstMessage: db.prepare<[number, ...MessageValues]>(`INSERT INTO messages
        (task_no, position, id, role, content, created_at, attached_files, thoughts, tool_calls, after_seq) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, 0)`),
      deleteMessage: db.prepare<[number, number]>('DELETE FROM messages WHERE task_no = ? AND position = ?'),
      countMessage: db.prepare<[number, string, number]>('UPDATE tasks SET message_count = message_count + ?, last_activity_at = ? WHERE no = ?'),
      messages: db.prepare<[string], MessageRow>(`SELECT ${messageColumns} FROM messages WHERE task_no = ${taskNo} ORDER BY position`),
      messagesByNo: db.prepare<[number], MessageRow>(`SELECT ${messageColumns} FROM messages WHERE task_no = ? ORDER BY position`),
      // One statement: the next sequence number, and nothing when the task does not exist.
      // last_activity_at is not touched per event: it is indexed, and messages and status changes
      // mark activity well enough for listing, at a fraction of the writes.
      insertEvent: db.prepare<[string, string, string, string], { task_no: number; seq: number }>(`INSERT INTO events (task_no, seq, type, data, created_at)
        SELECT no, ${lastSeq} + 1, ?, ?, ? FROM tasks WHERE id = ? RETURNING task_no, seq`),
      insertEventAt: db.prepare<[number, number, string, string, string]>('INSERT INTO events (task_no, seq, type, data, created_at) VALUES (?, ?, ?, ?, ?)'),
      events: db.prepare<[string, number, number, number], { seq: number; type: string; data: string; created_at: string }>(
        `SELECT seq, type, data, created_at FROM events WHERE task_no = ${taskNo} AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`),
      lastSeqByNo: db.prepare<[number], { last_seq: number }>('SELECT COALESCE(MAX(seq), 0) AS last_seq FROM events WHERE task_no = ?'),
      insertApproval: db.prepare(`INSERT INTO approvals (id, task_id, call_id, tool_name, server, tool, args, digest, status, outcome, reason, decided_by, args_edited, edited_args, policy, requested_at, decided_at, expires_at, input_schema)
        VALUES (@id, @taskId, @callId, @toolName, @server, @tool, @args, @digest, @status, @outcome, @reason, @decidedBy, @argsEdited, @editedArgs, @policy, @requestedAt, @decidedAt, @expiresAt, @inputSchema)`),
      decideApproval: db.prepare(`UPDATE approvals SET status = @status, outcome = @outcome, reason = @reason, decided_by = @decidedBy, args_edited = @argsEdited, edited_args = @editedArgs, decided_at = @decidedAt
        WHERE task_id = @taskId AND call_id = @callId AND status = 'pending'`),
      approval: db.prepare<[string, string], ApprovalRow>('SELECT * FROM approvals WHERE task_id = ? AND call_id = ?'),
      approvals: db.prepare<[string], ApprovalRow>('SELECT * FROM approvals WHERE task_id = ? ORDER BY requested_at, rowid'),
    };
  }

  /**
   * Runs `fn` inside the current group transaction; resolves after the commit. One statement is
   * atomic on its own; a `fn` of several takes back its earlier statements when a later one fails
   * (`undo`), so that its failure leaves nothing and the rest of the group goes on.
   */
  private write<T>(fn: () => T): Promise<T> {
    if (!this.db.open) return Promise.reject(new Error('the store is closed'));
    // A group whose transaction SQLite already rolled back (an error in a statement outside write())
    // fails now: this write must not run outside a transaction and be reported with it.
    if (this.group && !this.db.inTransaction) this.abort(new Error('the transaction was rolled back by an earlier error'));
    let group = this.group;
    if (!group) {
      this.statements.begin.run();
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const committed = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
      // Each write's promise carries a failure to its caller; a group whose only write failed on
      // its own must not also raise an unhandled rejection.
      committed.catch(() => undefined);
      this.group = group = { committed, resolve, reject };
      setImmediate(() => this.commit());
    }
    let value: T;
    try {
      value = fn();
    } catch (err) {
      // Some errors (a full disk, I/O, RAISE(ROLLBACK)) roll back the whole transaction: the group's
      // earlier writes are lost and fail with this cause, and later writes start a new group, rather
      // than run one by one outside a transaction and be reported failed at its COMMIT.
      if (this.group === group && !this.db.inTransaction) this.abort(err);
      return Promise.reject(err);
    }
    // Every write of the group waits on the one commit promise; only a write with a value needs its own.
    return value === undefined ? (group.committed as Promise<T>) : group.committed.then(() => value);
  }

  private commit(): void {
    const group = this.group;
    if (!group) return;
    try {
      this.statements.commit.run();
    } catch (err) {
      this.abort(err);
      return;
    }
    this.group = null;
    group.resolve();
    this.checkpointer?.request();
  }

  /** Rolls back the open group transaction: every write of it fails with `err`. */
  private abort(err: unknown): void {
    const group = this.group!;
    this.group = null;
    this.eventTails.clear();
    try {
      this.statements.rollback.run();
    } catch {
      // A failed statement or COMMIT may already have ended the transaction.
    }
    group.reject(err);
  }

  /**
   * Takes back an earlier statement of a write whose later statement failed with `cause`. Should
   * that fail too, the whole group is rolled back: half a write is never committed.
   */
  private undo(statement: () => unknown, cause: unknown): void {
    // Some errors (a full disk, I/O) roll back the whole transaction themselves: the group is lost.
    if (!this.db.inTransaction) return this.abort(cause);
    try {
      statement();
    } catch (err) {
      this.abort(err);
    }
  }

  private statement(sql: string): Database.Statement {
    let statement = this.dynamic.get(sql);
    if (!statement) this.dynamic.set(sql, (statement = this.db.prepare(sql)));
    return statement;
  }

  async ensureProject(id: string): Promise<void> {
    await this.write(() => this.statements.ensureProject.run(id, new Date().toISOString()));
  }

  async createApiKey(key: ApiKeyRecord): Promise<void> {
    await this.write(() => this.statements.insertKey.run(key));
  }

  async findApiKeyByHash(keyHash: string): Promise<ApiKeyRecord | undefined> {
    const row = this.statements.keyByHash.get(keyHash);
    return row && keyFromRow(row);
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.statements.listKeys.all().map(keyFromRow);
  }

  async revokeApiKey(id: string, at: string): Promise<boolean> {
    return this.write(() => this.statements.revokeKey.run(at, id).changes > 0);
  }

  async countApiKeys(): Promise<number> {
    return this.statements.countKeys.get()!.n;
  }

  async createTask(task: TaskRecord, firstMessage?: Omit<MessageRecord, 'taskId' | 'afterSeq'>): Promise<void> {
    const values = [
      task.id, task.projectId, task.apiKeyId, task.endUserId, task.sessionId, task.conversationId, task.status, task.message, task.systemPrompt,
      task.showInHistory ? 1 : 0, task.autoExecute ? 1 : 0, task.env && JSON.stringify(task.env), task.error && JSON.stringify(task.error),
      JSON.stringify(task.usage), task.createdAt, task.startedAt, task.completedAt, task.lastActivityAt,
      firstMessage ? 1 : task.messageCount, task.runStartSeq, JSON.stringify(task.secretKeys), task.username,
    ];
    if (!firstMessage) return this.write(() => void this.statements.insertTask.run(values));
    const message = messageValues(firstMessage);
    return this.write(() => {
      const no = this.statements.insertTask.run(values).lastInsertRowid as number;
      try {
        this.statements.insertFirstMessage.run(no, ...message);
      } catch (err) {
        this.undo(() => this.statements.deleteTask.run(no), err);
        throw err;
      }
    });
  }

  async getTask(id: string): Promise<TaskRecord | undefined> {
    const row = this.statements.task.get(id);
    return row && taskFromRow(row);
  }

  async listTasks(query: TaskListQuery): Promise<TaskListPage> {
    const { rows, total, next } = this.atomically(() => listTaskRows<TaskRow>((sql) => this.statement(sql), query));
    return { tasks: rows.map(taskFromRow), total, next };
  }

  async updateTask(id: string, patch: TaskPatch): Promise<void> {
    const { keys, values } = patchValues(patch);
    if (!keys.length) return;
    const statement = this.patchStatement(keys, false, 0);
    values.push(id);
    await this.write(() => statement.run(values));
  }

  async transitionTask(id: string, from: readonly TaskStatus[], patch: TaskPatch & { status: TaskStatus }): Promise<boolean> {
    const { keys, values } = patchValues(patch);
    const stamp = patch.lastActivityAt === undefined;
    if (stamp) values.push(new Date().toISOString());
    values.push(id, ...from);
    const statement = this.patchStatement(keys, stamp, from.length);
    return this.write(() => statement.run(values).changes > 0);
  }

  /**
   * `UPDATE tasks SET <keys' columns> [, last_activity_at] WHERE id = ? [AND status IN (<guard> statuses)]`,
   * prepared once per shape: the callers use a handful.
   */
  private patchStatement(keys: (keyof TaskPatch)[], stamp: boolean, guard: number): Database.Statement<unknown[]> {
    const shape = `${keys.join()}|${stamp}|${guard}`;
    let statement = this.patches.get(shape);
    if (!statement) {
      const sets = keys.map((key) => `${PATCH_COLUMNS[key]} = ?`);
      if (stamp) sets.push('last_activity_at = ?');
      const where = guard ? ` AND status IN (${Array(guard).fill('?').join(', ')})` : '';
      this.patches.set(shape, (statement = this.db.prepare(`UPDATE tasks SET ${sets.join(', ')} WHERE id = ?${where}`)));
    }
    return statement;
  }

  async findTasksByStatus(statuses: readonly TaskStatus[]): Promise<TaskRecord[]> {
    return this.statements.tasksByStatus.all(JSON.stringify(statuses)).map(taskFromRow);
  }

  async appendMessage(message: Omit<MessageRecord, 'afterSeq'>): Promise<MessageRecord> {
    const values = messageValues(message);
    return this.write(() => {
      const row = this.statements.insertMessage.get(...values, message.taskId);
      if (!row) throw new Error(`no task ${message.taskId}`);
      try {
        // messageCount counts the messages history shows: a run's later turn records (an assistant
        // record after another) are part of the run's one message.
        const continuesRun = message.role === 'assistant' && this.statements.roleAt.get(row.task_no, row.position - 1)?.role === 'assistant';
        this.statements.countMessage.run(continuesRun ? 0 : 1, message.createdAt, row.task_no);
      } catch (err) {
        this.undo(() => this.statements.deleteMessage.run(row.task_no, row.position), err);
        throw err;
      }
      return { ...message, afterSeq: row.after_seq };
    });
  }

  async listMessages(taskId: string): Promise<MessageRecord[]> {
    return this.statements.messages.all(taskId).map((row) => messageFromRow(row, taskId));
  }

  async appendEvent(taskId: string, type: string, data: Record<string, unknown>): Promise<EventRecord> {
    const createdAt = new Date().toISOString();
    const json = JSON.stringify(data);
    const seq = await this.write(() => {
      const tail = this.eventTails.get(taskId);
      if (tail) {
        try {
          this.statements.insertEventAt.run(tail.no, tail.seq + 1, type, json, createdAt);
          return ++tail.seq;
        } catch (err) {
          if ((err as { code?: string }).code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') throw err;
          this.eventTails.delete(taskId);
        }
      }
      const row = this.statements.insertEvent.get(type, json, createdAt, taskId);
      if (!row) throw new Error(`no task ${taskId}`);
      // Insertion order is age order: past the bound, the oldest entry goes.
      if (this.eventTails.size >= EVENT_TAILS) this.eventTails.delete(this.eventTails.keys().next().value!);
      this.eventTails.set(taskId, { no: row.task_no, seq: row.seq });
      return row.seq;
    });
    return { taskId, seq, type, data, createdAt };
  }

  async listEvents(taskId: string, afterSeq: number, limit: number, untilSeq = Number.MAX_SAFE_INTEGER): Promise<EventRecord[]> {
    return (await this.listEventRows(taskId, afterSeq, limit, untilSeq)).map((row) => eventFromRow(taskId, row));
  }

  /** listEvents with each event's data still the stored JSON text (cheaper to hand to another thread). */
  async listEventRows(taskId: string, afterSeq: number, limit: number, untilSeq = Number.MAX_SAFE_INTEGER): Promise<EventRow[]> {
    return this.statements.events.all(taskId, afterSeq, untilSeq, limit);
  }

  async snapshot(taskId: string): Promise<TaskSnapshot | undefined> {
    return this.atomically(() => {
      const row = this.statements.task.get(taskId);
      if (!row) return undefined;
      const messages = this.statements.messagesByNo.all(row.no).map((message) => messageFromRow(message, taskId));
      return { task: taskFromRow(row), messages, lastSeq: this.statements.lastSeqByNo.get(row.no)!.last_seq };
    });
  }

  async createApproval(approval: ApprovalRecord): Promise<void> {
    await this.write(() => this.statements.insertApproval.run({ ...approval, args: JSON.stringify(approval.args), argsEdited: approval.argsEdited ? 1 : 0, editedArgs: approval.editedArgs && JSON.stringify(approval.editedArgs), inputSchema: approval.inputSchema && JSON.stringify(approval.inputSchema) }));
  }

  async decideApproval(taskId: string, callId: string, decision: ApprovalDecision): Promise<boolean> {
    return this.write(() => this.statements.decideApproval.run({ ...decision, argsEdited: decision.argsEdited ? 1 : 0, editedArgs: decision.editedArgs && JSON.stringify(decision.editedArgs), taskId, callId }).changes > 0);
  }

  async getApproval(taskId: string, callId: string): Promise<ApprovalRecord | undefined> {
    const row = this.statements.approval.get(taskId, callId);
    return row && approvalFromRow(row);
  }

  async listApprovals(taskId: string): Promise<ApprovalRecord[]> {
    return this.statements.approvals.all(taskId).map(approvalFromRow);
  }

  async ping(): Promise<void> {
    this.statements.ping.get();
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    this.commit();
    this.db.close();
    // Closed last, the worker's connection is the one that checkpoints the rest and removes the WAL.
    await this.checkpointer?.close();
  }
}

/** The patch's defined keys and their column values, in the order patchStatement binds them. */
function patchValues(patch: TaskPatch): { keys: (keyof TaskPatch)[]; values: unknown[] } {
  const keys: (keyof TaskPatch)[] = [];
  const values: unknown[] = [];
  for (const key of Object.keys(patch) as (keyof TaskPatch)[]) {
    const value = patch[key];
    if (value === undefined) continue;
    keys.push(key);
    values.push(JSON_PATCHES.has(key) && value !== null ? JSON.stringify(value) : value);
  }
  return { keys, values };
}

function messageValues(message: Omit<MessageRecord, 'taskId' | 'afterSeq'>): MessageValues {
  return [
    message.id, message.role, message.content, message.createdAt,
    message.attachedFiles ? JSON.stringify(message.attachedFiles) : null,
    message.thoughts?.length ? JSON.stringify(message.thoughts) : null,
    message.toolCalls?.length ? JSON.stringify(message.toolCalls) : null,
  ];
}

function taskFromRow(row: TaskRow): TaskRecord {
  return {
    id: row.id, projectId: row.project_id, apiKeyId: row.api_key_id, endUserId: row.end_user_id, username: row.username,
    sessionId: row.session_id, conversationId: row.conversation_id, status: row.status, message: row.message,
    systemPrompt: row.system_prompt, showInHistory: row.show_in_history === 1, autoExecute: row.auto_execute === 1,
    env: row.env ? JSON.parse(row.env) : null, error: row.error ? JSON.parse(row.error) : null, usage: JSON.parse(row.usage),
    createdAt: row.created_at, startedAt: row.started_at, completedAt: row.completed_at, lastActivityAt: row.last_activity_at,
    messageCount: row.message_count, runStartSeq: row.run_start_seq, secretKeys: JSON.parse(row.secret_keys),
  };
}

function messageFromRow(row: MessageRow, taskId: string): MessageRecord {
  const message: MessageRecord = { id: row.id, taskId, role: row.role, content: row.content, createdAt: row.created_at, afterSeq: row.after_seq };
  if (row.attached_files) message.attachedFiles = JSON.parse(row.attached_files);
  if (row.thoughts) message.thoughts = JSON.parse(row.thoughts);
  if (row.tool_calls) message.toolCalls = JSON.parse(row.tool_calls);
  return message;
}

function approvalFromRow(row: ApprovalRow): ApprovalRecord {
  return {
    id: row.id, taskId: row.task_id, callId: row.call_id, toolName: row.tool_name, server: row.server, tool: row.tool,
    args: JSON.parse(row.args), digest: row.digest, status: row.status, outcome: row.outcome, reason: row.reason,
    decidedBy: row.decided_by, argsEdited: row.args_edited === 1, editedArgs: row.edited_args ? JSON.parse(row.edited_args) : null, policy: row.policy,
    requestedAt: row.requested_at, decidedAt: row.decided_at, expiresAt: row.expires_at,
    inputSchema: row.input_schema ? JSON.parse(row.input_schema) : null,
  };
}

function keyFromRow(row: KeyRow): ApiKeyRecord {
  return {
    id: row.id, projectId: row.project_id, name: row.name, keyHash: row.key_hash, keyPrefix: row.key_prefix,
    createdAt: row.created_at, expiresAt: row.expires_at, revokedAt: row.revoked_at,
  };
}

/** An event as stored: its data is JSON text. */
export interface EventRow {
  seq: number;
  type: string;
  data: string;
  created_at: string;
}

export function eventFromRow(taskId: string, row: EventRow): EventRecord {
  return { taskId, seq: row.seq, type: row.type, data: JSON.parse(row.data) as Record<string, unknown>, createdAt: row.created_at };
}
