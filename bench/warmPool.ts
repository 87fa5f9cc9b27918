// Warm pool: 100 tasks in a row on one HTTP MCP server config, each calling `echo` once. With the
// pool's default idle TTL they should share one MCP session; the baseline, in the same run, is the
// same 100 tasks with `mcp.idleTtlMs: 0`, so that every task connects anew.
import { performance } from 'node:perf_hooks';
import { startEchoHttpServer } from '../fixtures/mcp/echoServer.js';
import type { EchoHttpServer } from '../fixtures/mcp/echoServer.js';
import type { PoolStats } from '../src/mcp/mcpPool.js';
import { closeAirlock, createTask, fmt, goal, isMain, loud, printMachine, printTable, summarize, waitForIdle, withTempDir } from './lib.js';
import { createdMs, EventRecorder, failureOf, startAirlockWithServers } from './mcpSupport.js';

const TASKS = 100;
/** Tasks run (and not counted) on a throwaway Airlock and echo server first, so that neither phase pays for cold JIT. */
const WARMUP_TASKS = 10;
const MESSAGE = `/call echo__echo ${JSON.stringify({ text: 'hi' })}`;
const TASK_TIMEOUT_MS = 10_000;

interface PhaseResult {
  /** POST /tasks (before the request) → first tool_call append, performance.now(), per task. */
  toCallHr: number[];
  /** The same to the first tool_result append. */
  toResultHr: number[];
  /** POST /tasks → first tool_call createdAt, on the Date clock (whole ms). */
  toCallCreated: number[];
  /** POST /tasks → done. */
  totalMs: number[];
  sessions: number;
  connections: number;
  pool: PoolStats;
  wallS: number;
}

/** Runs `tasks` one-call tasks one after another on a fresh echo server and a fresh Airlock. */
async function phase(tasks: number, idleTtlMs: number | undefined): Promise<PhaseResult> {
  let echo: EchoHttpServer | undefined;
  try {
    echo = await startEchoHttpServer();
    const url = echo.url;
    return await withTempDir('airlock-bench-warmpool-', async (dir) => {
      const airlock = await startAirlockWithServers(dir, { echo: { type: 'http', url } }, idleTtlMs === undefined ? {} : { mcp: { idleTtlMs } });
      try {
        const recorder = new EventRecorder(airlock.store);
        const result: Omit<PhaseResult, 'sessions' | 'connections' | 'pool' | 'wallS'> = { toCallHr: [], toResultHr: [], toCallCreated: [], totalMs: [] };
        const phaseStart = performance.now();
        for (let i = 0; i < tasks; i++) {
          const postedAtDate = Date.now();
          const postedAt = performance.now();
          const id = await createTask(airlock.url, MESSAGE);
          const events = await recorder.finished(id, TASK_TIMEOUT_MS);
          const doneAt = performance.now();
          const failure = failureOf(events);
          if (failure) throw new Error(`task ${i + 1} failed: ${failure}`);
          const call = events.find((e) => e.type === 'tool_call' && e.data.status === 'executing');
          const answer = events.find((e) => e.type === 'tool_result');
          if (!call || !answer) throw new Error(`task ${i + 1} made no tool call`);
          if (answer.data.status !== 'success' || answer.data.output !== 'hi') throw new Error(`task ${i + 1}: echo ended ${String(answer.data.status)}: ${String(answer.data.output)}`);
          result.toCallHr.push(call.hr - postedAt);
          result.toResultHr.push(answer.hr - postedAt);
          result.toCallCreated.push(createdMs(call) - postedAtDate);
          result.totalMs.push(doneAt - postedAt);
          // The task has stored `done`; also wait until its run has left the queue before the next starts.
          const idle = await waitForIdle(airlock.url, TASK_TIMEOUT_MS);
          if (idle.ms < 0) throw new Error(`task ${i + 1} still occupies the queue after done (running ${idle.running}, queued ${idle.queued})`);
        }
        const wallS = (performance.now() - phaseStart) / 1000;
        return { ...result, sessions: echo!.sessions, connections: echo!.connections, pool: airlock.pool.stats(), wallS };
      } finally {
        await closeAirlock(airlock);
      }
    });
  } finally {
    await echo?.close();
  }
}

export async function runWarmPool(): Promise<void> {
  console.log(`\nwarm pool: ${TASKS} tasks in a row, each one echo call over HTTP, with the pool's default idle TTL vs mcp.idleTtlMs 0 (every task connects), same process`);
  printMachine();
  try {
    await phase(WARMUP_TASKS, 0);
    const warm = await phase(TASKS, undefined);
    const fresh = await phase(TASKS, 0);

    const row = (label: string, r: PhaseResult) => {
      const rest = summarize(r.toCallHr.slice(1));
      return [
        label, String(r.sessions), String(r.pool.connects), String(r.connections),
        fmt(r.toCallHr[0]!, 2), fmt(rest.median, 2), fmt(rest.p95, 2), fmt(summarize(r.toCallCreated.slice(1)).median, 0),
        fmt(summarize(r.toResultHr.slice(1)).median, 2), fmt(summarize(r.totalMs.slice(1)).median, 2), fmt(r.wallS, 2),
      ];
    };
    console.log(`  (after ${WARMUP_TASKS} uncounted tasks on a throwaway Airlock and echo server; each phase has its own echo server, Airlock and data dir)`);
    printTable([
      ['', 'MCP sessions', 'pool connects', 'TCP conns', 'task 1 (cold) ms', 'tasks 2–100 median ms', 'p95 ms', 'createdAt median ms', 'to tool_result median ms', 'to done median ms', 'phase s'],
      row('pool, default idle TTL', warm),
      row('baseline: mcp.idleTtlMs 0', fresh),
    ]);
    const warmMedian = summarize(warm.toCallHr.slice(1)).median;
    const freshMedian = summarize(fresh.toCallHr.slice(1)).median;
    console.log(`  time to first tool call = POST /tasks sent → the first tool_call event appended (performance.now() at the store's append, which stamps createdAt;`);
    console.log('  the createdAt column is the same on the Date clock, whole ms). It includes the API request and its commit, the queue, two');
    console.log('  commits as the run starts, opening the task\'s MCP session (pool lease; connect and tools/list when the connection is new),');
    console.log('  the scripted model turn and the usage commit.');
    console.log(`  warm pool: task 1 (cold) ${fmt(warm.toCallHr[0]!, 2)} ms vs tasks 2–100 ${fmt(warmMedian, 2)} ms (cold/warm ${fmt(warm.toCallHr[0]! / warmMedian, 1)}x)`);
    console.log(`  baseline/pool, tasks 2–100 medians: ${fmt(freshMedian / warmMedian, 2)}x (${fmt(freshMedian - warmMedian, 2)} ms more per task to connect anew)`);
    console.log(`  goal: 1 MCP session and 1 pool connect for all ${TASKS} tasks: ${warm.sessions} session(s), ${warm.pool.connects} connect(s) (${goal(warm.sessions === 1 && warm.pool.connects === 1)})`);
    console.log('  TCP connections are what the echo server accepted; the SDK\'s fetch (undici) keeps sockets alive across MCP sessions, so they');
    console.log('  need not follow sessions one to one; a session may also hold a standalone GET stream on a socket of its own.');
    if (fresh.sessions < TASKS) loud(`the idleTtlMs 0 baseline made ${fresh.sessions} MCP sessions for ${TASKS} tasks: it did not connect anew each time`);
  } catch (err) {
    loud(`warm-pool bench failed: ${(err as Error).message}`);
  }
}

if (isMain(import.meta.url)) await runWarmPool();
