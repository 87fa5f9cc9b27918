import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { SCHEMA_VERSION, SqliteStore } from '../../src/store/sqliteStore.js';
import type { TaskRecord } from '../../src/store/store.js';
import { rejection, waitFor } from '../support/harness.js';
import { downgradeToSchema5 } from '../support/schema5.js';

function newTask(id = randomUUID()): TaskRecord {
  const now = new Date().toISOString();
  return {
    id, projectId: 'default', apiKeyId: 'key-1', endUserId: null, username: null, sessionId: randomUUID(), conversationId: randomUUID(),
    status: 'pending', message: 'hello', systemPrompt: null, showInHistory: true, autoExecute: true, env: null, error: null,
    usage: { inputTokens: 0, outputTokens: 0, turns: 0 }, createdAt: now, startedAt: null, completedAt: null,
    lastActivityAt: now, messageCount: 0, runStartSeq: 0, secretKeys: [],
  };
}

// The tables of schema 2 (before the store numbered events from MAX(seq) and keyed messages by task and position).
const SCHEMA_V2 = `
  CREATE TABLE projects (id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
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
    PRIMARY KEY (task_id, seq)) WITHOUT ROWID;
  CREATE TABLE approvals (
    id TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks(id), call_id TEXT NOT NULL,
    tool_name TEXT NOT NULL, server TEXT NOT NULL, tool TEXT NOT NULL, args TEXT NOT NULL, digest TEXT NOT NULL,
    status TEXT NOT NULL, outcome TEXT, reason TEXT, decided_by TEXT, args_edited INTEGER NOT NULL DEFAULT 0, edited_args TEXT, policy TEXT,
    requested_at TEXT NOT NULL, decided_at TEXT, expires_at TEXT);
  CREATE UNIQUE INDEX approvals_by_call ON approvals(task_id, call_id);`;

const firstMessage = (content = 'hello') => ({ id: randomUUID(), role: 'user' as const, content, createdAt: new Date().toISOString() });

describe('SqliteStore', () => {
  let dir: string;
  let path: string;
  let store: SqliteStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-store-'));
    path = join(dir, 'airlock.db');
    store = new SqliteStore(path);
    await store.ensureProject('default');
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A second connection, as another process would see the file: only committed rows. */
  function otherConnection<T>(read: (db: Database.Database) => T): T {
    const db = new Database(path, { readonly: true });
    try {
      return read(db);
    } finally {
      db.close();
    }
  }

  describe('#createTask()', () => {
    it('stores the task and its first message as position 0, counted, before any event', async () => {
      const task = newTask();
      const message = firstMessage('/reply ok');
      await store.createTask(task, message);
      expect((await store.getTask(task.id))!.messageCount).to.equal(1);
      expect(await store.listMessages(task.id)).to.deep.equal([{ ...message, taskId: task.id, afterSeq: 0 }]);
    });

    it('has committed both rows when it resolves', async () => {
      const task = newTask();
      await store.createTask(task, firstMessage());
      const rows = otherConnection((db) => ({
        tasks: db.prepare('SELECT COUNT(*) AS n FROM tasks WHERE id = ?').get(task.id),
        messages: db.prepare('SELECT COUNT(*) AS n FROM messages WHERE task_no = (SELECT no FROM tasks WHERE id = ?)').get(task.id),
      }));
      expect(rows).to.deep.equal({ tasks: { n: 1 }, messages: { n: 1 } });
    });

    it('stores neither row when the message cannot be stored, and other writes of the same commit survive', async () => {
      const orphan = newTask();
      const other = newTask();
      // A message without content fails the second statement, after the task row went in.
      const broken = { ...firstMessage(), content: null as unknown as string };
      const [refused, fine] = await Promise.allSettled([store.createTask(orphan, broken), store.createTask(other, firstMessage())]);
      expect(refused.status).to.equal('rejected');
      expect(fine.status).to.equal('fulfilled');
      expect(await store.getTask(orphan.id)).to.equal(undefined);
      expect((await store.getTask(other.id))!.messageCount).to.equal(1);
    });
  });

  describe('#appendMessage()', () => {
    it('refuses a message of a task that does not exist', async () => {
      const err = (await rejection(store.appendMessage({ id: randomUUID(), taskId: randomUUID(), role: 'assistant', content: 'x', createdAt: new Date().toISOString() }))) as Error;
      expect(err.message).to.match(/no task/);
    });

    it('stores nothing when the task cannot count the message, and other writes of the same commit survive', async () => {
      const task = newTask();
      const other = newTask();
      await store.createTask(task, firstMessage());
      await store.createTask(other, firstMessage());
      // The second statement (counting the message on its task) fails, after the message row went in.
      const db = new Database(path);
      db.prepare(`CREATE TRIGGER refuse_count BEFORE UPDATE OF message_count ON tasks WHEN OLD.id = '${task.id}' BEGIN SELECT RAISE(ABORT, 'refused'); END`).run();
      db.close();
      const reply = (taskId: string) => store.appendMessage({ id: randomUUID(), taskId, role: 'assistant', content: 'reply', createdAt: new Date().toISOString() });
      const [refused, fine] = await Promise.allSettled([reply(task.id), reply(other.id)]);
      expect(refused.status).to.equal('rejected');
      expect(fine.status).to.equal('fulfilled');
      expect((await store.listMessages(task.id)).map((m) => m.content)).to.deep.equal(['hello']);
      expect((await store.getTask(task.id))!.messageCount).to.equal(1);
      expect((await store.listMessages(other.id)).map((m) => m.content)).to.deep.equal(['hello', 'reply']);
    });
  });

  describe('#appendMessage() counting', () => {
    it('keeps every turn record in order and counts a run\'s consecutive assistant records once, as history shows them', async () => {
      const task = newTask();
      await store.createTask(task, firstMessage('first'));
      const append = (role: 'user' | 'assistant', content: string) => store.appendMessage({ id: randomUUID(), taskId: task.id, role, content, createdAt: new Date().toISOString() });
      await append('assistant', '');
      await append('assistant', 'turn 2');
      expect((await store.getTask(task.id))!.messageCount).to.equal(2);
      await append('user', 'follow-up');
      await append('assistant', 'answer');
      expect((await store.getTask(task.id))!.messageCount).to.equal(4);
      expect((await store.listMessages(task.id)).map((m) => m.content)).to.deep.equal(['first', '', 'turn 2', 'follow-up', 'answer']);
      const positions = otherConnection((db) => db.prepare('SELECT position FROM messages WHERE task_no = (SELECT no FROM tasks WHERE id = ?) ORDER BY position').all(task.id));
      expect(positions).to.deep.equal([0, 1, 2, 3, 4].map((position) => ({ position })));
    });
  });

  describe('group commits', () => {
    it('fails the writes of a transaction SQLite rolled back, and commits the later writes of the same turn in a new one', async () => {
      const [before, poisoned, after] = [newTask(), newTask(), newTask()];
      for (const task of [before, poisoned, after]) await store.createTask(task, firstMessage());
      // An error that rolls back the whole transaction, as a full disk or an I/O error can.
      const db = new Database(path);
      db.prepare(`CREATE TRIGGER lose_transaction BEFORE INSERT ON events WHEN NEW.task_no = (SELECT no FROM tasks WHERE id = '${poisoned.id}') BEGIN SELECT RAISE(ROLLBACK, 'rolled back'); END`).run();
      db.close();
      const results = await Promise.allSettled([
        store.appendEvent(before.id, 'content', { text: 'a' }),
        store.appendEvent(poisoned.id, 'content', { text: 'b' }),
        store.appendEvent(after.id, 'content', { text: 'c' }),
      ]);
      expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected', 'fulfilled']);
      expect((results[0] as PromiseRejectedResult).reason.message).to.equal('rolled back');
      // What each caller was told is what the file holds.
      const stored = otherConnection((other) => other.prepare('SELECT t.id AS id, e.seq AS seq FROM events e JOIN tasks t ON t.no = e.task_no').all());
      expect(stored).to.deep.equal([{ id: after.id, seq: 1 }]);
      expect((await store.appendEvent(before.id, 'content', { text: 'again' })).seq).to.equal(1);
    });

    it('numbers a task\'s next event after its last stored one when a group with its events was rolled back (no gap)', async () => {
      const [task, poisoned] = [newTask(), newTask()];
      for (const t of [task, poisoned]) await store.createTask(t, firstMessage());
      expect((await store.appendEvent(task.id, 'content', { text: 'kept' })).seq).to.equal(1);
      const db = new Database(path);
      db.prepare(`CREATE TRIGGER lose_transaction BEFORE INSERT ON events WHEN NEW.task_no = (SELECT no FROM tasks WHERE id = '${poisoned.id}') BEGIN SELECT RAISE(ROLLBACK, 'rolled back'); END`).run();
      db.close();
      const results = await Promise.allSettled([store.appendEvent(task.id, 'content', { text: 'lost' }), store.appendEvent(poisoned.id, 'content', { text: 'x' })]);
      expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected']);
      // Event 2 was never stored: the next event is 2 again, not 3.
      expect((await store.appendEvent(task.id, 'content', { text: 'next' })).seq).to.equal(2);
      expect((await store.listEvents(task.id, 0, 10)).map((e) => [e.seq, e.data.text])).to.deep.equal([[1, 'kept'], [2, 'next']]);
    });
  });

  describe('#appendEvent()', () => {
    it('numbers each task\'s events 1, 2, 3… in call order, also when appends are not awaited one by one', async () => {
      const a = newTask();
      const b = newTask();
      await store.createTask(a, firstMessage());
      await store.createTask(b, firstMessage());
      const appended = await Promise.all([
        store.appendEvent(a.id, 'content', { text: 'a1' }), store.appendEvent(b.id, 'content', { text: 'b1' }),
        store.appendEvent(a.id, 'content', { text: 'a2' }), store.appendEvent(a.id, 'content', { text: 'a3' }),
      ]);
      expect(appended.map((event) => [event.data.text, event.seq])).to.deep.equal([['a1', 1], ['b1', 1], ['a2', 2], ['a3', 3]]);
      expect((await store.listEvents(a.id, 0, 10)).map((event) => event.seq)).to.deep.equal([1, 2, 3]);
    });

    it('numbers on after events another connection appended to the same task meanwhile', async () => {
      const task = newTask();
      await store.createTask(task, firstMessage());
      expect((await store.appendEvent(task.id, 'content', { text: 'a1' })).seq).to.equal(1);
      const other = new SqliteStore(path);
      try {
        expect((await other.appendEvent(task.id, 'content', { text: 'b2' })).seq).to.equal(2);
      } finally {
        await other.close();
      }
      expect((await store.appendEvent(task.id, 'content', { text: 'a3' })).seq).to.equal(3);
      expect((await store.listEvents(task.id, 0, 10)).map((e) => e.data.text)).to.deep.equal(['a1', 'b2', 'a3']);
    });

    it('refuses an event of a task that does not exist', async () => {
      const err = (await rejection(store.appendEvent(randomUUID(), 'status', { status: 'running' }))) as Error;
      expect(err.message).to.match(/no task/);
    });

    it('stamps messages and snapshots with the last sequence so far', async () => {
      const task = newTask();
      await store.createTask(task, firstMessage());
      await store.appendEvent(task.id, 'status', { status: 'running' });
      await store.appendEvent(task.id, 'content', { text: 'hi', isPartial: false });
      const reply = await store.appendMessage({ id: randomUUID(), taskId: task.id, role: 'assistant', content: 'hi', createdAt: new Date().toISOString() });
      expect(reply.afterSeq).to.equal(2);
      await store.appendEvent(task.id, 'done', { finalResponse: 'hi' });
      const snapshot = (await store.snapshot(task.id))!;
      expect(snapshot.lastSeq).to.equal(3);
      expect(snapshot.messages.map((m) => [m.role, m.afterSeq])).to.deep.equal([['user', 0], ['assistant', 2]]);
    });
  });

  it('migrates a database of schema 2 and keeps its messages and event numbering', async () => {
    await store.close();
    await rm(path);
    const v2 = new Database(path);
    v2.exec(SCHEMA_V2);
    v2.pragma('user_version = 2');
    const task = newTask();
    v2.prepare("INSERT INTO projects (id, created_at) VALUES ('default', '2025-01-01T00:00:00.000Z')").run();
    v2.prepare(`INSERT INTO tasks (id, project_id, session_id, conversation_id, status, message, show_in_history, auto_execute, usage, created_at, last_activity_at, message_count, last_seq)
      VALUES (?, 'default', ?, ?, 'completed', 'hello', 1, 1, '{"inputTokens":0,"outputTokens":0,"turns":0}', ?, ?, 1, 2)`).run(task.id, task.sessionId, task.conversationId, task.createdAt, task.createdAt);
    const messageId = randomUUID();
    v2.prepare("INSERT INTO messages (id, task_id, position, role, content, created_at, after_seq) VALUES (?, ?, 0, 'user', 'hello', ?, 0)").run(messageId, task.id, task.createdAt);
    for (const seq of [1, 2]) v2.prepare("INSERT INTO events (task_id, seq, type, data, created_at) VALUES (?, ?, 'status', '{}', ?)").run(task.id, seq, task.createdAt);
    v2.close();

    store = new SqliteStore(path);
    expect((await store.listMessages(task.id)).map((m) => [m.id, m.content, m.afterSeq])).to.deep.equal([[messageId, 'hello', 0]]);
    expect((await store.appendEvent(task.id, 'status', { status: 'running' })).seq).to.equal(3);
    const reply = await store.appendMessage({ id: randomUUID(), taskId: task.id, role: 'assistant', content: 'hi', createdAt: new Date().toISOString() });
    expect(reply.afterSeq).to.equal(3);
    const snapshot = (await store.snapshot(task.id))!;
    expect(snapshot.lastSeq).to.equal(3);
    expect(snapshot.task.messageCount).to.equal(2);
    expect(snapshot.messages.map((m) => m.content)).to.deep.equal(['hello', 'hi']);
  });

  it('migrates a database of schema 5: tasks numbered in created_at order, every row read back as before, numbering going on', async () => {
    // Created out of created_at order, with messages, events and approvals of each.
    const later = { ...newTask(), createdAt: '2025-03-02T00:00:00.000Z', status: 'awaiting_approval' as const, env: { A: '1' }, secretKeys: ['TOKEN'] };
    const earlier = { ...newTask(), createdAt: '2025-03-01T00:00:00.000Z', status: 'completed' as const, error: { code: 'X', message: 'y' } };
    for (const task of [later, earlier]) {
      await store.createTask(task, { ...firstMessage(), attachedFiles: [{ name: 'a.txt', path: 'uploads/a.txt' }] });
      await store.appendEvent(task.id, 'status', { status: 'running' });
      await store.appendEvent(task.id, 'content', { text: `from ${task.createdAt}`, isPartial: false });
      await store.appendMessage({
        id: randomUUID(), taskId: task.id, role: 'assistant', content: 'calling', createdAt: new Date().toISOString(),
        thoughts: [{ subject: 's', description: 'd' }], toolCalls: [{ callId: 'c1', toolName: 'act', status: 'awaiting_approval', args: { n: 1 } }],
      });
      await store.appendEvent(task.id, 'tool_call', { callId: 'c1', status: 'awaiting_approval' });
      await store.createApproval({
        id: randomUUID(), taskId: task.id, callId: 'c1', toolName: 'act', server: 'fake', tool: 'act', args: { n: 1 }, digest: 'd'.repeat(64),
        status: 'pending', outcome: null, reason: null, decidedBy: null, argsEdited: false, editedArgs: null, policy: 'autoExecute is false',
        requestedAt: task.createdAt, decidedAt: null, expiresAt: null, inputSchema: { type: 'object' },
      });
    }
    const read = async (id: string) => ({
      task: await store.getTask(id), messages: await store.listMessages(id), events: await store.listEvents(id, 0, 100),
      approvals: await store.listApprovals(id), snapshot: await store.snapshot(id),
    });
    const before = [await read(later.id), await read(earlier.id)];
    await store.close();
    downgradeToSchema5(path);
    expect(otherConnection((db) => db.pragma('user_version', { simple: true }))).to.equal(5);

    store = new SqliteStore(path);
    expect([await read(later.id), await read(earlier.id)]).to.deep.equal(before);
    expect(otherConnection((db) => db.pragma('user_version', { simple: true }))).to.equal(SCHEMA_VERSION);
    expect(otherConnection((db) => db.prepare('SELECT id FROM tasks ORDER BY no').all())).to.deep.equal([{ id: earlier.id }, { id: later.id }]);
    // Replay from a sequence, and the next event, message and decision of each task.
    expect((await store.listEvents(later.id, 2, 100)).map((e) => e.type)).to.deep.equal(['tool_call']);
    expect((await store.appendEvent(later.id, 'status', { status: 'running' })).seq).to.equal(4);
    expect((await store.appendEvent(earlier.id, 'done', { finalResponse: 'ok' })).seq).to.equal(4);
    const reply = await store.appendMessage({ id: randomUUID(), taskId: later.id, role: 'assistant', content: 'done', createdAt: new Date().toISOString() });
    expect(reply.afterSeq).to.equal(4);
    expect((await store.snapshot(later.id))!.messages.map((m) => m.content)).to.deep.equal(['hello', 'calling', 'done']);
    const decision = { status: 'approved' as const, outcome: 'proceed_once' as const, reason: null, decidedBy: 'key:k', argsEdited: false, editedArgs: null, decidedAt: new Date().toISOString() };
    expect(await store.decideApproval(later.id, 'c1', decision)).to.equal(true);
    expect((await store.getApproval(later.id, 'c1'))!.status).to.equal('approved');
    // A new task after the migrated ones.
    const next = newTask();
    await store.createTask(next, firstMessage());
    expect(otherConnection((db) => db.prepare('SELECT id FROM tasks ORDER BY no DESC LIMIT 1').get())).to.deep.equal({ id: next.id });
  });

  describe('background checkpoints', () => {
    it('copies committed pages into the database file from a worker thread, and removes the WAL at close', async () => {
      await store.close();
      store = new SqliteStore(path, { backgroundCheckpoints: true });
      const task = newTask();
      await store.createTask(task, firstMessage());
      const before = statSync(path).size;
      // About 1,000 pages: far below the writer's own backstop of 10,000, so only the worker copies them.
      for (let group = 0; group < 20; group++) {
        await Promise.all(Array.from({ length: 50 }, (_, i) => store.appendEvent(task.id, 'content', { text: `${group}-${i} ${'x'.repeat(3_000)}` })));
      }
      await waitFor(() => statSync(path).size > before + 1_000_000, 'pages to reach the database file');
      await store.close();
      expect(existsSync(`${path}-wal`)).to.equal(false);
      store = new SqliteStore(path);
      expect((await store.listEvents(task.id, 0, 2_000)).length).to.equal(1_000);
    });
  });
});
