import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import { ThreadedStore } from '../../src/store/storeThread.js';
import type { TaskRecord } from '../../src/store/store.js';
import { rejection } from '../support/harness.js';

function taskRecord(id = randomUUID()): TaskRecord {
  const now = new Date().toISOString();
  return {
    id, projectId: 'default', apiKeyId: null, endUserId: null, username: null, sessionId: randomUUID(), conversationId: randomUUID(), status: 'pending',
    message: 'hello', systemPrompt: null, showInHistory: true, autoExecute: true, env: { A: 'b' }, error: null,
    usage: { inputTokens: 0, outputTokens: 0, turns: 0 }, createdAt: now, startedAt: null, completedAt: null, lastActivityAt: now,
    messageCount: 0, runStartSeq: 0, secretKeys: [],
  };
}
const firstMessage = () => ({ id: randomUUID(), role: 'user' as const, content: 'hello', createdAt: new Date().toISOString() });

describe('ThreadedStore (the SqliteStore on a worker thread)', () => {
  let dir: string;
  let path: string;
  let store: ThreadedStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-store-thread-'));
    path = join(dir, 'airlock.db');
    store = await ThreadedStore.open(path);
    await store.ensureProject('default');
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  function committedStatus(id: string): string | undefined {
    const db = new Database(path, { readonly: true });
    try {
      return (db.prepare('SELECT status FROM tasks WHERE id = ?').get(id) as { status: string } | undefined)?.status;
    } finally {
      db.close();
    }
  }

  it('round-trips records through the thread: a task, its first message, a snapshot', async () => {
    const task = taskRecord();
    const message = firstMessage();
    await store.createTask(task, message);
    expect(await store.getTask(task.id)).to.deep.equal({ ...task, messageCount: 1 });
    const snapshot = await store.snapshot(task.id);
    expect(snapshot?.messages).to.deep.equal([{ ...message, taskId: task.id, afterSeq: 0 }]);
    expect(await store.getTask(randomUUID())).to.equal(undefined);
  });

  it('applies calls in call order: un-awaited appends are numbered in order, and a read sees every write called before it', async () => {
    const task = taskRecord();
    void store.createTask(task, firstMessage());
    const data = { text: 'kept as is' };
    const appends = [store.appendEvent(task.id, 'content', data), store.appendEvent(task.id, 'status', { status: 'running' }), store.appendEvent(task.id, 'done', {})];
    void store.transitionTask(task.id, ['pending'], { status: 'running' });
    const read = store.getTask(task.id);
    expect((await Promise.all(appends)).map((e) => e.seq)).to.deep.equal([1, 2, 3]);
    expect((await read)?.status).to.equal('running');
    // The event's data is the caller's own object: it does not come back across the thread.
    expect((await appends[0])!.data).to.equal(data);
    expect((await store.listEvents(task.id, 0, 10)).map((e) => e.type)).to.deep.equal(['content', 'status', 'done']);
  });

  it('resolves a write only once it is committed: another connection sees it then', async () => {
    const task = taskRecord();
    await store.createTask(task, firstMessage());
    const moved = store.transitionTask(task.id, ['pending'], { status: 'running' });
    expect(await moved).to.equal(true);
    expect(committedStatus(task.id)).to.equal('running');
  });

  it('rejects a failed call with the store\'s error, code included, and goes on with the others', async () => {
    const task = taskRecord();
    await store.createTask(task, firstMessage());
    const [duplicate, unknown, fine] = await Promise.allSettled([
      store.createTask(task, firstMessage()),
      store.appendEvent(randomUUID(), 'status', {}),
      store.appendEvent(task.id, 'status', { status: 'running' }),
    ]);
    expect(duplicate.status).to.equal('rejected');
    expect((duplicate as PromiseRejectedResult).reason).to.be.instanceOf(Error).with.property('code').that.matches(/^SQLITE_CONSTRAINT/);
    expect((unknown as PromiseRejectedResult).reason.message).to.match(/^no task /);
    expect((fine as PromiseFulfilledResult<{ seq: number }>).value.seq).to.equal(1);
  });

  it('close() waits for the calls already made, then refuses new ones', async () => {
    const task = taskRecord();
    const created = store.createTask(task, firstMessage());
    const closed = store.close();
    await created;
    await closed;
    expect(committedStatus(task.id)).to.equal('pending');
    expect(String(await rejection(store.getTask(task.id)))).to.match(/closed/);
  });

  it('fails every waiting and later call if the thread dies, rather than hang, and says so once', async () => {
    const failures: Error[] = [];
    const dying = await ThreadedStore.open(join(dir, 'dying.db'), { onFailure: (err) => failures.push(err) });
    await dying.ping();
    const waiting = dying.listTasks({ projectId: 'default', includeHidden: true, limit: 10, offset: 0 });
    await (dying as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    expect(String(await rejection(waiting))).to.match(/store thread exited/);
    expect(String(await rejection(dying.ping()))).to.match(/store thread exited/);
    expect(String(await rejection(dying.getTask(randomUUID())))).to.match(/store thread exited/);
    expect(failures.map((err) => err.message)).to.deep.equal(['the store thread exited']);
    await dying.close();
  });

  it('fails to open a database of a newer schema with the store\'s message', async () => {
    const newer = join(dir, 'newer.db');
    const db = new Database(newer);
    db.pragma('user_version = 999');
    db.close();
    expect(String(await rejection(ThreadedStore.open(newer)))).to.match(/newer than this Airlock/);
    // The same file still opens in-process for the same answer: nothing was changed.
    expect(() => new SqliteStore(newer)).to.throw(/newer than this Airlock/);
  });
});
