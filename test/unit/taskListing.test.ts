import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import type { TaskListQuery, TaskRecord, TaskStatus } from '../../src/store/store.js';
import { listTaskRows } from '../../src/store/taskListing.js';
import { downgradeToSchema6 } from '../support/schema6.js';

const STATUSES: TaskStatus[] = ['pending', 'running', 'awaiting_approval', 'completed', 'failed', 'cancelled'];
type Owner = { apiKeyId: string } | { endUserId: string };
const OWNERS: Owner[] = [{ apiKeyId: 'key-a' }, { apiKeyId: 'key-b' }, { endUserId: 'alice' }, { endUserId: 'bob' }];

/** A fixed sequence of pseudo-random numbers in [0, 1), the same every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
}

/** A stamp out of a few, so that many tasks share one and the tie-break is exercised. */
const stamp = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, n % 12)).toISOString();

function newTask(owner: Owner, fields: Partial<TaskRecord> = {}): TaskRecord {
  const now = stamp(0);
  return {
    id: randomUUID(), projectId: 'default', apiKeyId: null, endUserId: null, username: null, ...owner,
    sessionId: randomUUID(), conversationId: randomUUID(), status: 'pending', message: 'hello', systemPrompt: null,
    showInHistory: true, autoExecute: true, env: null, error: null, usage: { inputTokens: 0, outputTokens: 0, turns: 0 },
    createdAt: now, startedAt: null, completedAt: null, lastActivityAt: now, messageCount: 0, runStartSeq: 0, secretKeys: [], ...fields,
  };
}

const firstMessage = () => ({ id: randomUUID(), role: 'user' as const, content: 'hello', createdAt: stamp(0) });

interface Row { id: string; no: number; project_id: string; api_key_id: string | null; end_user_id: string | null; show_in_history: number; status: string; last_activity_at: string }

/** Every shape of query: each scope, with and without hidden tasks, each status or none. */
function everyQuery(projectId = 'default'): Omit<TaskListQuery, 'limit' | 'offset'>[] {
  const queries: Omit<TaskListQuery, 'limit' | 'offset'>[] = [];
  for (const owner of [{}, ...OWNERS]) {
    for (const includeHidden of [false, true]) {
      for (const status of [undefined, ...STATUSES]) queries.push({ projectId, ...owner, includeHidden, ...(status ? { status } : {}) });
    }
  }
  return queries;
}

describe('SqliteStore#listTasks()', () => {
  let dir: string;
  let path: string;
  let store: SqliteStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-listing-'));
    path = join(dir, 'airlock.db');
    store = new SqliteStore(path);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A second connection, as another process would see the file. */
  function withDb<T>(use: (db: Database.Database) => T): T {
    const db = new Database(path);
    try {
      return use(db);
    } finally {
      db.close();
    }
  }

  /** The ids the query must list, in order, worked out from every row with COUNT-free JavaScript. */
  function expected(query: Omit<TaskListQuery, 'limit' | 'offset'>): string[] {
    const rows = withDb((db) => db.prepare('SELECT * FROM tasks').all() as Row[]).filter((row) => row.project_id === query.projectId
      && (query.apiKeyId === undefined || row.api_key_id === query.apiKeyId) && (query.endUserId === undefined || row.end_user_id === query.endUserId)
      && (query.includeHidden || row.show_in_history === 1) && (!query.status || row.status === query.status));
    rows.sort((a, b) => (a.last_activity_at === b.last_activity_at ? b.no - a.no : a.last_activity_at < b.last_activity_at ? 1 : -1));
    return rows.map((row) => row.id);
  }

  /** Tasks of every owner in two projects, some hidden, in every status, with activity stamps that often tie. */
  async function seed(count: number, seedValue = 7): Promise<TaskRecord[]> {
    const next = random(seedValue);
    const tasks: TaskRecord[] = [];
    for (let i = 0; i < count; i++) {
      const task = newTask(OWNERS[Math.floor(next() * OWNERS.length)]!, {
        projectId: next() < 0.85 ? 'default' : 'other', showInHistory: next() >= 0.2, lastActivityAt: stamp(Math.floor(next() * 12)),
      });
      await store.createTask(task, firstMessage());
      tasks.push(task);
    }
    for (const task of tasks) {
      const status = STATUSES[Math.floor(next() * STATUSES.length)]!;
      if (status !== 'pending') await store.transitionTask(task.id, ['pending'], { status, lastActivityAt: stamp(Math.floor(next() * 12)) });
    }
    return tasks;
  }

  it('counts every scope, visibility and status as COUNT(*) would, through creates, status changes, an undone create and deletes', async () => {
    const tasks = await seed(150);
    // An undone create: the task row goes in and out again in one write.
    const broken = { ...firstMessage(), content: null as unknown as string };
    await store.createTask(newTask(OWNERS[0]!), broken).then(() => expect.fail('the broken create was stored'), () => undefined);
    // Status changes back and forth, and rows deleted by another connection.
    for (const task of tasks.slice(0, 20)) await store.transitionTask(task.id, STATUSES, { status: 'running' });
    for (const task of tasks.slice(0, 10)) await store.transitionTask(task.id, ['running'], { status: 'failed' });
    withDb((db) => {
      for (const task of tasks.slice(20, 25)) {
        db.prepare('DELETE FROM messages WHERE task_no = (SELECT no FROM tasks WHERE id = ?)').run(task.id);
        db.prepare('DELETE FROM tasks WHERE id = ?').run(task.id);
      }
    });
    for (const projectId of ['default', 'other']) {
      for (const query of everyQuery(projectId)) {
        const ids = expected(query);
        const page = await store.listTasks({ ...query, limit: 100, offset: 0 });
        expect(page.total, JSON.stringify(query)).to.equal(ids.length);
        expect(page.tasks.map((t) => t.id), JSON.stringify(query)).to.deep.equal(ids.slice(0, 100));
      }
    }
  });

  it('pages by offset from either end: every page is its slice of the whole list, the last as the first', async () => {
    await seed(120);
    for (const query of [{ projectId: 'default', includeHidden: true }, { projectId: 'default', apiKeyId: 'key-a', includeHidden: false }]) {
      const ids = expected(query);
      for (const limit of [1, 7, 50]) {
        for (let offset = 0; offset <= ids.length + 1; offset++) {
          const page = await store.listTasks({ ...query, limit, offset });
          const what = `${JSON.stringify(query)} limit ${limit} offset ${offset}`;
          expect(page.tasks.map((t) => t.id), what).to.deep.equal(ids.slice(offset, offset + limit));
          expect(page.next === null, what).to.equal(offset + limit >= ids.length);
        }
      }
    }
  });

  it('walks by cursor over every task exactly once while new tasks are created between pages, ending on the last page by offset', async () => {
    await seed(100);
    const query = { projectId: 'default', apiKeyId: 'key-b', includeHidden: false };
    const before = expected(query);
    const limit = 4;
    expect(before.length, 'the seed gives key-b a few pages').to.be.greaterThan(3 * limit);
    const seen: string[] = [];
    let page = await store.listTasks({ ...query, limit, offset: 0 });
    for (let n = 1; ; n++) {
      seen.push(...page.tasks.map((t) => t.id));
      if (!page.next) break;
      // Newer activity than any listed task: they go to the top, ahead of the walk.
      for (let i = 0; i < 3; i++) await store.createTask(newTask({ apiKeyId: 'key-b' }, { lastActivityAt: new Date(Date.UTC(2026, 1, 1, 0, 0, n * 3 + i)).toISOString() }), firstMessage());
      page = await store.listTasks({ ...query, limit, offset: 0, after: page.next });
      expect(page.total).to.equal(before.length + 3 * n);
    }
    expect(seen).to.deep.equal(before);
    // The walk's last page is the page at the same offset from the end of the list now.
    const lastPage = before.slice(Math.floor((before.length - 1) / limit) * limit);
    const byOffset = await store.listTasks({ ...query, limit, offset: expected(query).length - lastPage.length });
    expect(byOffset.tasks.map((t) => t.id)).to.deep.equal(lastPage);
    expect(byOffset.next).to.equal(null);
  });

  it('reads every page from an index range in listing order: no sort, no scan of the table', async () => {
    await seed(60);
    const plans: string[][] = [];
    withDb((db) => {
      // Each statement as listTaskRows runs it, its plan read with the same parameters.
      const statement = (sql: string) => {
        const real = db.prepare(sql);
        const plan = (params: unknown) => plans.push((db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as { detail: string }[]).map((row) => `${row.detail}  <- ${sql}`));
        return { get: (params: unknown) => (plan(params), real.get(params)), all: (params: unknown) => (plan(params), real.all(params)) } as unknown as Database.Statement;
      };
      for (const query of everyQuery()) {
        listTaskRows(statement, { ...query, limit: 5, offset: 0 });
        listTaskRows(statement, { ...query, limit: 5, offset: 0, after: { lastActivityAt: stamp(6), no: 30 } });
        // Past the middle: read from the other end.
        listTaskRows(statement, { ...query, limit: 5, offset: Math.max(1, expected(query).length - 3) });
      }
    });
    for (const plan of plans) {
      expect(plan, plan.join('\n')).to.have.length(1);
      expect(plan[0], plan[0]).to.match(/^SEARCH (tasks USING INDEX tasks_of_|task_counts USING PRIMARY KEY)/);
    }
    expect(plans.some(([detail]) => detail!.includes('tasks_of_user_by_status (project_id=? AND end_user_id=? AND status=? AND last_activity_at<?)'))).to.equal(true);
  });

  it('migrates a data dir of schema 6: username from the key\'s name or the end user id, counts of the tasks already there', async () => {
    await store.ensureProject('default');
    await store.createApiKey({ id: 'key-a', projectId: 'default', name: 'ci', keyHash: 'a'.repeat(64), keyPrefix: 'airlock_aaaaaaaa', createdAt: stamp(0), expiresAt: null, revokedAt: null });
    await store.createApiKey({ id: 'key-b', projectId: 'default', name: null, keyHash: 'b'.repeat(64), keyPrefix: 'airlock_bbbbbbbb', createdAt: stamp(0), expiresAt: null, revokedAt: null });
    const tasks = await seed(80);
    await store.close();
    downgradeToSchema6(path);
    expect(withDb((db) => db.prepare("SELECT COUNT(*) AS n FROM sqlite_schema WHERE name = 'task_counts'").get())).to.deep.equal({ n: 0 });

    store = new SqliteStore(path);
    for (const task of tasks) {
      const want = 'apiKeyId' in task && task.apiKeyId === 'key-a' ? 'ci' : task.endUserId;
      expect((await store.getTask(task.id))!.username, task.id).to.equal(want);
    }
    for (const query of everyQuery()) {
      const page = await store.listTasks({ ...query, limit: 100, offset: 0 });
      expect(page.total, JSON.stringify(query)).to.equal(expected(query).length);
    }
  });
});
