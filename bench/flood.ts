// A hostile MCP server floods Airlock with progress notifications: one task calls the echo
// fixture's `flood_progress`, which sends 100,000 notifications/progress as fast as it can, once
// over stdio (a real server in the real sandbox) and once over Streamable HTTP (the server in a
// process of its own). Meanwhile /healthz is polled; its latency is printed beside a quiet
// baseline (the same polling of the same Airlock, before the task), with the number of events
// stored for the call.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { echoStdioCommand } from '../fixtures/mcp/echoServer.js';
import type { McpServerConfig } from '../src/config.js';
import { closeAirlock, createTask, fmt, goal, isMain, loud, percentile, printMachine, printTable, ROOT, stopChild, withTempDir } from './lib.js';
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

/** The echo server over Streamable HTTP in a child process (so its sending is not on Airlock's loop); its URL is the first line it prints. */
async function startHttpEcho(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'fixtures/mcp/echoServer.ts'), 'http'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`the echo server exited (${code}) before printing its URL`)));
    });
    return { url: url.trim(), child };
  } catch (err) {
    await stopChild(child);
    throw err;
  } finally {
    lines.close();
  }
}

async function phase(label: string, server: McpServerConfig): Promise<void> {
  await withTempDir('airlock-bench-flood-', async (dir) => {
    const airlock = await startAirlockWithServers(dir, { flood: server });
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
      const output = events.find((e) => e.type === 'tool_result')?.data.output;
      if (output !== 'flooded') throw new Error(`the flood call answered ${JSON.stringify(output)}`);
      const progress = events.filter((e) => e.type === 'tool_progress');
      const last = progress.at(-1)?.data as { progress?: number } | undefined;
      console.log(`\n  ${label}`);
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

export async function runFlood(): Promise<void> {
  console.log(`\nflood: /healthz while an MCP server sends ${NOTIFICATIONS.toLocaleString('en')} progress notifications in one call, beside ${QUIET_MS / 1000} s of quiet polling of the same Airlock`);
  printMachine();
  try {
    const command = echoStdioCommand();
    await phase('stdio (the server in the task\'s sandbox)', { type: 'stdio', command: command.command, args: command.args });
    const http = await startHttpEcho();
    try {
      await phase('Streamable HTTP (the server in a process of its own)', { type: 'http', url: http.url });
    } finally {
      await stopChild(http.child);
    }
  } catch (err) {
    loud(`flood bench failed: ${(err as Error).stack ?? String(err)}`);
  }
}

if (isMain(import.meta.url)) await runFlood();
