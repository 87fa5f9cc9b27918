// Create-task throughput: POST /api/v1/tasks at 50 connections, against a bare Koa route with
// koa-body in the same process, both loaded by autocannon running in a child process. Two phases,
// each with an Airlock of its own: the request path (the goal's figure: created tasks wait in
// their model turn, as real tasks wait on a provider, so nothing but creating runs), then the same
// load with every created task also run by the scripted model during it (printed beside it).
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Koa from 'koa';
import { koaBody } from 'koa-body';
import {
  autocannon, closeAirlock, closeServer, cpuSeconds, fmt, goal, isMain, listen, loud, mainThreadCpuSeconds, printMachine,
  printTable, sleep, startBenchAirlock, waitForIdle, withTempDir,
} from './lib.js';
import type { CannonResult } from './lib.js';

const CONNECTIONS = 50;
const DURATION_S = 10;
const WARMUP_S = 2;
const DRAIN_TIMEOUT_MS = 15_000;
// After the timed run: how long the backlog may take to drain before the baseline is measured again.
const FINAL_DRAIN_TIMEOUT_MS = 45_000;
const RATIO_GOAL = 0.4;

interface Phase {
  title: string;
  /** The task's message: its script for the scripted model. */
  message: string;
  /** True when the created tasks run (and use the CPU) during the load; false when they wait in their model turn. */
  runs: boolean;
}
const REQUEST_PATH: Phase = { title: 'the request path (the goal\'s figure)', message: '/delay 600000', runs: false };
const WITH_RUNS: Phase = { title: 'with every created task also run during the load', message: '/reply ok', runs: true };

/** autocannon's result and the CPU seconds this (the server's) process, and its main thread, used meanwhile. */
type Measured = CannonResult & { serverCpuS: number; mainThreadCpuS: number };

/** Runs autocannon in a child process so that the load generator does not share the server's event loop. */
async function cannon(url: string, durationS: number, body: string): Promise<Measured> {
  const cpu = process.cpuUsage();
  const mainThread = mainThreadCpuSeconds();
  const result = await autocannon(url, { connections: CONNECTIONS, durationS, body });
  return { ...result, serverCpuS: cpuSeconds(cpu), mainThreadCpuS: mainThreadCpuSeconds() - mainThread };
}

// The baseline route: Koa, koa-body parsing the same JSON body, the same envelope and status.
function bareApp(): Koa {
  const app = new Koa();
  app.silent = true;
  app.use(koaBody());
  app.use(async (ctx) => {
    if (ctx.method !== 'POST') return;
    ctx.status = 201;
    ctx.body = { success: true, data: { id: randomUUID(), status: 'pending' } };
  });
  return app;
}

/** The tasks numbered after `afterNo` (tasks.no counts up), by status; and the highest number so far. */
function taskCounts(dbPath: string, afterNo = 0): { counts: Record<string, number>; lastNo: number } {
  const db = new Database(dbPath, { readonly: true });
  try {
    const rows = db.prepare<[number], { status: string; n: number }>('SELECT status, COUNT(*) AS n FROM tasks WHERE no > ? GROUP BY status').all(afterNo);
    const { lastNo } = db.prepare<[], { lastNo: number | null }>('SELECT MAX(no) AS lastNo FROM tasks').get()!;
    return { counts: Object.fromEntries(rows.map((row) => [row.status, row.n])), lastNo: lastNo ?? 0 };
  } finally {
    db.close();
  }
}

function describeCounts(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([status, n]) => `${status} ${n}`);
  return parts.length ? parts.join(', ') : 'none';
}

function checkErrors(name: string, r: CannonResult): void {
  if (r.errors || r.timeouts || r.non2xx) {
    loud(`${name}: ${r.non2xx} non-2xx responses ${JSON.stringify(r.statusCodeStats)}, ${r.errors} errors, ${r.timeouts} timeouts: THIS RUN IS NOT VALID`);
  }
}

/**
 * Waits until this process has been nearly idle (under 10 % of a core) for half a second, at most
 * `timeoutMs`: after a load, the store thread still checkpoints the WAL for a moment.
 */
async function waitForQuiet(timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const since = process.cpuUsage();
    await sleep(500);
    if (cpuSeconds(since) < 0.05) return;
  }
}

/** One phase: the bare route, Airlock, the bare route again; prints the table and the ratio. */
async function runPhase(phase: Phase): Promise<void> {
  const body = JSON.stringify({ message: phase.message });
  return withTempDir('airlock-bench-create-', async (dir) => {
    const airlock = await startBenchAirlock(dir);
    const bare = createServer(bareApp().callback());
    try {
      console.log(`\n  ${phase.title}: {"message":"${phase.message}"}`);
      const bareUrl = `${await listen(bare)}/api/v1/tasks`;
      const airlockUrl = `${airlock.url}/api/v1/tasks`;

      await cannon(bareUrl, WARMUP_S, body);
      const bareBefore = await cannon(bareUrl, DURATION_S, body);

      await cannon(airlockUrl, WARMUP_S, body);
      const warmDrain = phase.runs ? await waitForIdle(airlock.url, DRAIN_TIMEOUT_MS) : undefined;
      const { lastNo: before } = taskCounts(join(dir, 'airlock.db'));
      const airlockResult = await cannon(airlockUrl, DURATION_S, body);
      const loadStopped = performance.now();
      const atEnd = taskCounts(join(dir, 'airlock.db'), before).counts;
      // The baseline again, once Airlock is idle: the machine's speed drifts (other tenants), and the
      // mean of a measurement before and one after is a fairer baseline than either alone. Tasks that
      // wait in their model turn use no CPU; a backlog that still runs would slow the bare route, so
      // when it cannot drain the second run is skipped.
      let drain: Awaited<ReturnType<typeof waitForIdle>> | undefined;
      if (phase.runs) drain = await waitForIdle(airlock.url, FINAL_DRAIN_TIMEOUT_MS, 5_000);
      else await waitForQuiet(10_000);
      const drained = phase.runs ? taskCounts(join(dir, 'airlock.db'), before).counts : undefined;
      const bareAfter = !drain || drain.ms >= 0 ? await cannon(bareUrl, DURATION_S, body) : undefined;
      const bareRounds = bareAfter ? [bareBefore, bareAfter] : [bareBefore];
      const bareMean = bareRounds.reduce((sum, r) => sum + r.requests.average, 0) / bareRounds.length;

      const ratio = airlockResult.requests.average / bareMean;
      const cpuPerRequest = (r: Measured) => (r.serverCpuS * 1e6) / Math.max(1, r.requests.total);
      const row = (name: string, r: Measured) => [
        name, fmt(r.requests.average, 0), String(r.latency.p50), String(r.latency.p99), String(r['2xx']), String(r.non2xx), String(r.errors), String(r.timeouts), fmt(cpuPerRequest(r), 0),
        fmt((r.mainThreadCpuS * 1e6) / Math.max(1, r.requests.total), 0),
      ];
      printTable([
        ['', 'req/s', 'p50 ms', 'p99 ms', '2xx', 'non-2xx', 'errors', 'timeouts', 'server CPU us/req', 'of it event loop'],
        row('bare Koa + koa-body (JSON parsed), before', bareBefore),
        row('airlock', airlockResult),
        ...(bareAfter ? [row('bare Koa + koa-body (JSON parsed), after', bareAfter)] : []),
      ]);
      const baseline = bareAfter
        ? `the mean of the two bare runs, ${fmt(bareMean, 0)} req/s (airlock/before ${fmt(airlockResult.requests.average / bareBefore.requests.average, 2)}, airlock/after ${fmt(airlockResult.requests.average / bareAfter.requests.average, 2)})`
        : `the bare run before (the backlog had not drained, so the bare run after was skipped)`;
      const verdict = phase.runs ? 'not the goal\'s measure, see below' : `goal >= ${RATIO_GOAL} (${goal(ratio >= RATIO_GOAL)})`;
      console.log(`  ratio airlock/bare (req/s): ${fmt(ratio, 2)}   ${verdict};  against ${baseline}`);
      console.log(`  CPU per request bare (before)/airlock: ${fmt(cpuPerRequest(bareBefore) / cpuPerRequest(airlockResult), 2)}`);
      console.log(`  tasks of the timed run, by status when the load stopped: ${describeCounts(atEnd)}`);
      if (drain && drained) {
        console.log(drain.ms >= 0
          ? `  the backlog drained ${fmt(drain.ms / 1000, 2)} s after the load stopped: ${describeCounts(drained)}`
          : `  the backlog had NOT drained ${fmt((performance.now() - loadStopped) / 1000, 1)} s after the load stopped (running ${drain.running}, queued ${drain.queued}): ${describeCounts(drained)}`);
      }
      if (phase.runs) {
        console.log('  every created task is run by the scripted model (concurrency 8) in the same process during the load, so');
        console.log('  the airlock figure also pays for the runs: how the CPU splits between creating and running depends on');
        console.log('  the queue\'s concurrency and on how fast a run goes (a faster runtime runs more tasks during the load).');
      } else {
        console.log('  each created task is committed and queued; 8 at a time enter their model turn, which waits (as a real');
        console.log('  model call does), so nothing but the request path uses the CPU during the load.');
      }
      if (warmDrain && warmDrain.ms < 0) console.log(`  note: the warm-up backlog had not drained before the timed run (queued ${warmDrain.queued})`);
      for (const r of bareRounds) checkErrors('bare Koa', r);
      checkErrors('airlock', airlockResult);
    } finally {
      await closeServer(bare);
      await closeAirlock(airlock);
    }
  });
}

export async function runCreateTask(): Promise<void> {
  console.log(`\ncreate-task: POST /api/v1/tasks, ${CONNECTIONS} connections, ${DURATION_S} s after a ${WARMUP_S} s warm-up, autocannon in a child process`);
  printMachine();
  await runPhase(REQUEST_PATH);
  await runPhase(WITH_RUNS);
  console.log('\n  Latencies are autocannon\'s, whole milliseconds. server CPU is every thread of the process (Airlock\'s store');
  console.log('  thread and WAL checkpointer, V8\'s GC helpers); "of it event loop" is the main thread alone. autocannon\'s');
  console.log('  own CPU is not in either.');
}

if (isMain(import.meta.url)) await runCreateTask();
