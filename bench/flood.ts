// A hostile MCP server floods Airlock with progress notifications: one task calls the echo
// fixture's `flood_progress` (a real stdio server in the real sandbox), which sends 100,000
// notifications/progress as fast as it can. Meanwhile /healthz is polled; its latency is printed
// beside a quiet baseline (the same polling of the same Airlock, before the task), with the
// number of events stored for the call.
import { performance } from 'node:perf_hooks';
import { echoStdioCommand } from '../fixtures/mcp/echoServer.js';
import { closeAirlock, createTask, fmt, goal, isMain, percentile, printMachine, printTable, withTempDir } from './lib.js';
import { EventRecorder, failureOf, startAirlockWithServers } from './mcpSupport.js';

const NOTIFICATIONS = 100_000;
const QUIET_MS = 3_000;
const POLL_GAP_MS = 10;
const GOAL_HEALTHZ_MS = 100;

/** Polls /healthz until `stop` resolves; returns each answer's latency in ms, sorted. */
async function pollHealth(baseUrl: string, stop: Promise<unknown>): Promise<number[]> {
  let stopped = false;
  void stop.finally(() => (stopped = true));
  const latencies: number[] = [];
  while (!stopped) {
    const start = performance.now();
    const res = await fetch(`${baseUrl}/healthz`);
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`/healthz answered ${res.status}`);
    latencies.push(performance.now() - start);
    await new Promise((resolve) => setTimeout(resolve, POLL_GAP_MS));
  }
  return latencies.sort((a, b) => a - b);
}

const row = (label: string, ms: number[]) => [label, String(ms.length), fmt(percentile(ms, 50), 2), fmt(percentile(ms, 99), 2), fmt(ms.at(-1)!, 2)];

export async function runFlood(): Promise<void> {
  console.log(`\nflood: /healthz while a stdio server sends ${NOTIFICATIONS.toLocaleString('en')} progress notifications in one call, beside ${QUIET_MS / 1000} s of quiet polling of the same Airlock`);
  printMachine();
  await withTempDir('airlock-bench-flood-', async (dir) => {
    const command = echoStdioCommand();
    const airlock = await startAirlockWithServers(dir, { flood: { type: 'stdio', command: command.command, args: command.args } });
    const recorder = new EventRecorder(airlock.store);
    try {
      const quiet = await pollHealth(airlock.url, new Promise((resolve) => setTimeout(resolve, QUIET_MS)));
      const start = performance.now();
      const id = await createTask(airlock.url, `/call flood__flood_progress ${JSON.stringify({ count: NOTIFICATIONS })}`);
      const finished = recorder.finished(id, 120_000);
      const flooded = await pollHealth(airlock.url, finished.catch(() => undefined));
      const events = await finished;
      const wallS = (performance.now() - start) / 1000;
      const failure = failureOf(events);
      if (failure) throw new Error(`the flood task failed: ${failure}`);
      const progress = events.filter((e) => e.type === 'tool_progress');
      const last = progress.at(-1)?.data as { progress?: number } | undefined;
      printTable([
        ['/healthz', 'answers', 'p50 ms', 'p99 ms', 'max ms'],
        row('quiet (baseline)', quiet),
        row('during the flood', flooded),
      ]);
      console.log(`  task: ${fmt(wallS, 2)} s, ${events.length} events stored, ${progress.length} of them tool_progress for ${NOTIFICATIONS.toLocaleString('en')} notifications; last progress stored: ${last?.progress}`);
      console.log(`  goal: /healthz max under ${GOAL_HEALTHZ_MS} ms during the flood: ${goal(flooded.at(-1)! < GOAL_HEALTHZ_MS)}; last progress is the last sent: ${goal(last?.progress === NOTIFICATIONS)}`);
    } finally {
      await closeAirlock(airlock);
    }
  });
}

if (isMain(import.meta.url)) await runFlood();
