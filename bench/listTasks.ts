// GET /tasks at 100,000 tasks: the first, a middle and the last page, by offset and by cursor,
// beside the listing of the code before (COUNT(*) and OFFSET, on a schema 6 copy of the same rows)
// in the same run; then POST /tasks req/s alone and with one client listing in a loop.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { encodeListCursor } from '../src/api/listCursor.js';
import { listTaskRows } from '../src/store/taskListing.js';
import type { TaskListQuery } from '../src/store/store.js';
import { downgradeToSchema6 } from '../test/support/schema6.js';
import {
  autocannon, closeAirlock, cpuSeconds, fmt, goal, isMain, loud, printMachine, printTable, startBenchAirlock, withTempDir,
} from './lib.js';
import type { CannonResult } from './lib.js';

const TASKS = 100_000;
/** Every HIDDEN_EVERY-th seeded task has showInHistory false: hidden tasks are skipped in the index. */
const HIDDEN_EVERY = 20;
const LIMIT = 50;
const GOAL_MS = 10;
const LATENCY_S = 3;
const CREATE_CONNECTIONS = 50;
const CREATE_S = 10;
const WARMUP_S = 2;
/** Creates with a listing client against creates alone. */
const CREATE_RATIO_GOAL = 0.8;
/** Last page against first page, CPU per request. */
const LAST_PAGE_RATIO_GOAL = 1.5;

/**
 * 100,000 finished tasks of the bench key, each with its user and assistant message, straight into
 * the store file: one activity stamp a second. The store's own triggers count them.
 */
function seed(dbPath: string): { keyId: string; listed: number } {
  const db = new Database(dbPath);
  try {
    const { id: keyId } = db.prepare<[], { id: string }>("SELECT id FROM api_keys WHERE name = 'bootstrap'").get()!;
    const uuid = `lower(printf('%s-%s-4%s-%s%s-%s', hex(randomblob(4)), hex(randomblob(2)), substr(hex(randomblob(2)), 2),
      substr('89ab', 1 + abs(random()) % 4, 1), substr(hex(randomblob(2)), 2), hex(randomblob(6))))`;
    const stamp = "strftime('%Y-%m-%dT%H:%M:%fZ', '2026-01-01', '+' || i || ' seconds')";
    db.transaction(() => {
      db.prepare(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${TASKS})
        INSERT INTO tasks (id, project_id, api_key_id, end_user_id, username, session_id, conversation_id, status, message, system_prompt,
          show_in_history, auto_execute, env, error, usage, created_at, started_at, completed_at, last_activity_at, message_count, run_start_seq, secret_keys)
        SELECT ${uuid}, 'default', ?, NULL, 'bootstrap', ${uuid}, ${uuid}, 'completed', '/reply seeded task ' || i, NULL,
          i % ${HIDDEN_EVERY} != 0, 1, NULL, NULL, '{"inputTokens":120,"outputTokens":40,"turns":1}', ${stamp}, ${stamp}, ${stamp}, ${stamp}, 2, 0, '[]'
        FROM n`).run(keyId);
      for (const [position, role, content] of [[0, 'user', 'message'], [1, 'assistant', "'seeded task ' || no"]] as const) {
        db.prepare(`INSERT INTO messages (task_no, position, id, role, content, created_at, after_seq)
          SELECT no, ${position}, ${uuid}, '${role}', ${content}, created_at, 0 FROM tasks ORDER BY no`).run();
      }
    })();
    return { keyId, listed: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM tasks WHERE show_in_history = 1').get()!.n };
  } finally {
    db.close();
  }
}

/** CPU and wall ms per call of `fn`, over at least 1 s or 200 calls after 10 warm-up calls; one thread, nothing else running. */
function perCall(fn: () => unknown): { cpuMs: number; p50Ms: number } {
  for (let i = 0; i < 10; i++) fn();
  const walls: number[] = [];
  const cpu = process.cpuUsage();
  const start = performance.now();
  while (walls.length < 200 || performance.now() - start < 1_000) {
    const t = performance.now();
    fn();
    walls.push(performance.now() - t);
    if (performance.now() - start > 10_000) break;
  }
  walls.sort((a, b) => a - b);
  return { cpuMs: (cpuSeconds(cpu) * 1000) / walls.length, p50Ms: walls[Math.floor(walls.length / 2)]! };
}

/** The listing of the code before this bench (3592b96), verbatim: COUNT(*) and a page by OFFSET, in one transaction. */
function oldListing(db: Database.Database): (offset: number) => unknown[] {
  const clause = 'project_id = @projectId AND show_in_history = 1';
  const count = db.prepare(`SELECT COUNT(*) AS n FROM tasks WHERE ${clause}`);
  const page = db.prepare(`SELECT * FROM tasks WHERE ${clause} ORDER BY last_activity_at DESC, id LIMIT @limit OFFSET @offset`);
  const read = db.transaction((offset: number) => [count.get({ projectId: 'default' }), ...page.all({ projectId: 'default', limit: LIMIT, offset })]);
  return (offset) => read(offset);
}

/** The store's listing now, on the same connection type and in one transaction, without the HTTP around it. */
function newListing(db: Database.Database): (query: Omit<TaskListQuery, 'projectId' | 'includeHidden' | 'limit'>) => ReturnType<typeof listTaskRows> {
  const statements = new Map<string, Database.Statement>();
  const statement = (sql: string) => statements.get(sql) ?? statements.set(sql, db.prepare(sql)).get(sql)!;
  const read = db.transaction((query: Omit<TaskListQuery, 'projectId' | 'includeHidden' | 'limit'>) =>
    listTaskRows<{ no: number; last_activity_at: string }>(statement, { projectId: 'default', includeHidden: false, limit: LIMIT, ...query }));
  return (query) => read(query);
}

async function storeLevel(dir: string, keyId: string, listed: number): Promise<void> {
  const oldPath = join(dir, 'schema6.db');
  const current = new Database(join(dir, 'airlock.db'));
  current.exec(`VACUUM INTO '${oldPath}'`);
  downgradeToSchema6(oldPath);
  const previous = new Database(oldPath, { readonly: true });
  try {
    const before = oldListing(previous);
    const now = newListing(current);
    const own = { apiKeyId: keyId };
    const lastOffset = Math.floor((listed - 1) / LIMIT) * LIMIT;
    const beforeLast = now({ ...own, offset: lastOffset - LIMIT }).next!;
    const pages: [string, number, () => unknown][] = [
      ['first page', 0, () => now({ ...own, offset: 0 })],
      ['middle page (offset)', Math.floor(listed / 2 / LIMIT) * LIMIT, () => now({ ...own, offset: Math.floor(listed / 2 / LIMIT) * LIMIT })],
      ['last page (offset)', lastOffset, () => now({ ...own, offset: lastOffset })],
      ['last page (cursor)', lastOffset, () => now({ ...own, offset: 0, after: beforeLast })],
    ];
    const rows = [['page', 'before: CPU ms', 'now: CPU ms', 'now: wall p50 ms', 'before/now']];
    for (const [name, offset, fn] of pages) {
      const was = perCall(() => before(offset));
      const is = perCall(fn);
      rows.push([name, fmt(was.cpuMs, 2), fmt(is.cpuMs, 3), fmt(is.p50Ms, 3), `${fmt(was.cpuMs / is.cpuMs, 0)}x`]);
    }
    console.log(`\n  the store's read of one page of ${LIMIT} (with its total), in this process, one thread; "before" is the code before`);
    console.log('  (COUNT(*) and OFFSET on a schema 6 copy of the same rows, the cursor row measured by OFFSET as before there were cursors):');
    printTable(rows);
  } finally {
    previous.close();
    current.close();
  }
}

interface HttpRow { name: string; result: CannonResult; cpuMsPerRequest: number }

async function http(url: string, name: string): Promise<HttpRow> {
  const cpu = process.cpuUsage();
  const result = await autocannon(url, { connections: 1, durationS: LATENCY_S });
  if (result.non2xx || result.errors) loud(`${name}: ${result.non2xx} non-2xx, ${result.errors} errors: THIS RUN IS NOT VALID`);
  return { name, result, cpuMsPerRequest: (cpuSeconds(cpu) * 1000) / Math.max(1, result.requests.total) };
}

export async function runListTasks(): Promise<void> {
  console.log(`\nlist-tasks: GET /api/v1/tasks?limit=${LIMIT} at ${TASKS.toLocaleString('en')} tasks of one key (every ${HIDDEN_EVERY}th hidden), and POST /tasks beside a listing client`);
  printMachine();
  await withTempDir('airlock-bench-list-', async (dir) => {
    await closeAirlock(await startBenchAirlock(dir));
    const seedStart = performance.now();
    const { keyId, listed } = seed(join(dir, 'airlock.db'));
    console.log(`  seeded ${TASKS.toLocaleString('en')} tasks (${listed.toLocaleString('en')} listed) with 2 messages each in ${fmt((performance.now() - seedStart) / 1000, 1)} s`);
    await storeLevel(dir, keyId, listed);

    const airlock = await startBenchAirlock(dir);
    try {
      const base = `${airlock.url}/api/v1/tasks?limit=${LIMIT}`;
      const lastOffset = Math.floor((listed - 1) / LIMIT) * LIMIT;
      const beforeLast = await airlock.store.listTasks({ projectId: 'default', apiKeyId: keyId, includeHidden: false, limit: LIMIT, offset: lastOffset - LIMIT });
      const cursor = encodeListCursor({ after: beforeLast.next!, offset: lastOffset });
      await autocannon(base, { connections: 1, durationS: WARMUP_S });
      const rows = [
        await http(base, 'first page'),
        await http(`${base}&offset=${Math.floor(listed / 2 / LIMIT) * LIMIT}`, 'middle page (offset)'),
        await http(`${base}&offset=${lastOffset}`, 'last page (offset)'),
        await http(`${base}&cursor=${cursor}`, 'last page (cursor)'),
        await http(`${base}&scope=project&status=completed`, 'first page, scope=project&status=completed'),
      ];
      console.log(`\n  over HTTP, one connection for ${LATENCY_S} s each (autocannon in a child process); server CPU is every thread of this process:`);
      printTable([
        ['page', 'req/s', 'p50 ms', 'p99 ms', 'server CPU ms/req'],
        ...rows.map((r) => [r.name, fmt(r.result.requests.average, 0), String(r.result.latency.p50), String(r.result.latency.p99), fmt(r.cpuMsPerRequest, 2)]),
      ]);
      const first = rows[0]!;
      const last = rows[2]!;
      const slowest = Math.max(...rows.map((r) => r.result.latency.p50));
      console.log(`  goal: every page p50 <= ${GOAL_MS} ms at ${TASKS.toLocaleString('en')} tasks: slowest p50 ${slowest} ms (${goal(slowest <= GOAL_MS)})`);
      const lastRatio = last.cpuMsPerRequest / first.cpuMsPerRequest;
      console.log(`  goal: last page (offset) as cheap as the first, CPU ratio <= ${LAST_PAGE_RATIO_GOAL}: ${fmt(lastRatio, 2)} (${goal(lastRatio <= LAST_PAGE_RATIO_GOAL)})`);

      await creates(airlock.url, base);
    } finally {
      await closeAirlock(airlock);
    }
  });
}

/** POST /tasks at 50 connections: alone, then with one client listing the first page in a loop, then alone again. */
async function creates(url: string, listUrl: string): Promise<void> {
  const body = JSON.stringify({ message: '/delay 600000' });
  const post = () => autocannon(`${url}/api/v1/tasks`, { connections: CREATE_CONNECTIONS, durationS: CREATE_S, body });
  await autocannon(`${url}/api/v1/tasks`, { connections: CREATE_CONNECTIONS, durationS: WARMUP_S, body });
  const alone = await post();
  const [withListing, listing] = await Promise.all([post(), autocannon(listUrl, { connections: 1, durationS: CREATE_S })]);
  const aloneAgain = await post();
  for (const [name, r] of [['alone', alone], ['with listing', withListing], ['listing', listing], ['alone again', aloneAgain]] as const) {
    if (r.non2xx || r.errors || r.timeouts) loud(`${name}: ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts: THIS RUN IS NOT VALID`);
  }
  console.log(`\n  POST /tasks {"message":"/delay 600000"}, ${CREATE_CONNECTIONS} connections for ${CREATE_S} s each (the created tasks wait in their model turn);`);
  console.log('  the table keeps growing: about 50,000 tasks more per run:');
  printTable([
    ['', 'POST req/s', 'p50 ms', 'p99 ms', 'GET /tasks req/s (p50 ms)'],
    ['creates alone', fmt(alone.requests.average, 0), String(alone.latency.p50), String(alone.latency.p99), '-'],
    ['creates + one client listing the first page in a loop', fmt(withListing.requests.average, 0), String(withListing.latency.p50), String(withListing.latency.p99),
      `${fmt(listing.requests.average, 0)} (${listing.latency.p50})`],
    ['creates alone, again', fmt(aloneAgain.requests.average, 0), String(aloneAgain.latency.p50), String(aloneAgain.latency.p99), '-'],
  ]);
  const ratio = withListing.requests.average / ((alone.requests.average + aloneAgain.requests.average) / 2);
  console.log(`  goal: creates with a listing client >= ${CREATE_RATIO_GOAL} of creates alone (mean of the two): ${fmt(ratio, 2)} (${goal(ratio >= CREATE_RATIO_GOAL)})`);
  console.log('  (issue 13, before: one listing client cut POST /tasks from about 5,000 to 605 req/s at 165k tasks, a ratio of 0.12)');
}

if (isMain(import.meta.url)) await runListTasks();
