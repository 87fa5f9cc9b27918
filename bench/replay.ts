// Replay: a finished task with 10,000 stored events, streamed from the start (?after=0) and
// connected fresh (history only), against a plain SELECT formatted as SSE in-process.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import {
  AUTH_HEADERS, closeAirlock, createTask, fmt, forkSseClient, goal, isMain, loud, printMachine, printTable,
  startBenchAirlock, summarize, tickerModel, waitForIdle, withTempDir,
} from './lib.js';

const DELTAS = 10_000;
const ITERATIONS = 20;
const WARMUP = 3;
const GOAL_MS = 250;
const FILL_TIMEOUT_MS = 30_000;
const CLIENT_TIMEOUT_MS = 40_000;

interface ReplayResult {
  after: number[];
  afterEvents: number[];
  fresh: number[];
}

// Reads the same rows the stream replays, the way a bare implementation would: one SELECT, the
// stored JSON written as it is (or, second variant, parsed and re-serialized as Airlock does).
function baseline(dbPath: string, taskId: string, reserialize: boolean): { ms: number[]; events: number } {
  const db = new Database(dbPath, { readonly: true });
  try {
    const select = db.prepare<[string], { seq: number; type: string; data: string }>('SELECT seq, type, data FROM events WHERE task_no = (SELECT no FROM tasks WHERE id = ?) ORDER BY seq');
    const ms: number[] = [];
    let events = 0;
    let bytes = 0;
    for (let i = 0; i < WARMUP + ITERATIONS; i++) {
      const start = performance.now();
      const rows = select.all(taskId);
      let text = '';
      for (const row of rows) {
        const data = reserialize ? JSON.stringify(JSON.parse(row.data)) : row.data;
        text += `event: ${row.type}\ndata: ${data}\nid: ${row.seq}\n\n`;
      }
      bytes += text.length;
      if (i >= WARMUP) ms.push(performance.now() - start);
      events = rows.length;
    }
    if (bytes === 0) throw new Error('the baseline read nothing');
    return { ms, events };
  } finally {
    db.close();
  }
}

export async function runReplay(): Promise<void> {
  console.log(`\nreplay: one finished task with ${DELTAS} content deltas (+ status/content/done events), ${ITERATIONS} timed iterations after ${WARMUP} warm-up`);
  printMachine();
  await withTempDir('airlock-bench-replay-', async (dir) => {
    const model = tickerModel({ count: DELTAS, intervalMs: 0 });
    const airlock = await startBenchAirlock(dir, { modelFor: () => model });
    try {
      const fillStart = performance.now();
      const id = await createTask(airlock.url, 'replay ticker');
      const idle = await waitForIdle(airlock.url, FILL_TIMEOUT_MS);
      if (idle.ms < 0) throw new Error(`the task did not finish storing its events within ${FILL_TIMEOUT_MS} ms`);
      const fillMs = performance.now() - fillStart;
      const snapshot = await airlock.store.snapshot(id);
      if (snapshot?.task.status !== 'completed') throw new Error(`the replay task ended ${snapshot?.task.status}`);
      const stored = snapshot.lastSeq;

      const stream = `${airlock.url}/api/v1/tasks/${id}/stream`;
      const client = forkSseClient({ mode: 'replay', after: `${stream}?after=0`, fresh: stream, headers: AUTH_HEADERS, iterations: ITERATIONS, warmup: WARMUP });
      let result: ReplayResult;
      try {
        result = await client.message<ReplayResult>('result', CLIENT_TIMEOUT_MS);
      } finally {
        await client.stop();
      }
      const plain = baseline(join(dir, 'airlock.db'), id, false);
      const reserialized = baseline(join(dir, 'airlock.db'), id, true);

      const after = summarize(result.after);
      const fresh = summarize(result.fresh);
      const bare = summarize(plain.ms);
      const bareJson = summarize(reserialized.ms);
      console.log(`  ${stored} events stored; filling the store through the real pipeline took ${fmt(fillMs / 1000, 2)} s, ${fmt(stored / (fillMs / 1000), 0)} events/s`);
      printTable([
        ['', 'median ms', 'p95 ms', 'events', 'ratio (median)', ''],
        ['airlock GET /stream?after=0, to end of response', fmt(after.median), fmt(after.p95), String(Math.min(...result.afterEvents)), fmt(after.median / bare.median, 1), `goal <= ${GOAL_MS} ms (${goal(after.p95 <= GOAL_MS)})`],
        ['airlock GET /stream fresh, to history_done', fmt(fresh.median), fmt(fresh.p95), '', '', `goal <= ${GOAL_MS} ms (${goal(fresh.p95 <= GOAL_MS)})`],
        ['baseline: SELECT + SSE text, in-process', fmt(bare.median), fmt(bare.p95), String(plain.events), '1.0', ''],
        ['baseline + JSON.parse/stringify per row', fmt(bareJson.median), fmt(bareJson.p95), String(reserialized.events), fmt(bareJson.median / bare.median, 1), ''],
      ]);
      console.log('  the airlock figures are end to end over loopback from a child process (connect, auth, read, format, parse);');
      console.log('  the ratio column is each median over the plain baseline median.');
      const short = result.afterEvents.filter((n) => n !== stored).length;
      if (short) loud(`${short} of ${ITERATIONS} ?after=0 replays did not deliver all ${stored} events`);
    } finally {
      await closeAirlock(airlock);
    }
  });
}

if (isMain(import.meta.url)) await runReplay();
