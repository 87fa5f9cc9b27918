// Stream fan-out: 1,000 SSE subscribers on one task that emits 100 events/s for 10 s, against a
// bare node:http server writing the same frames from a timer. See bench/README.md.
import { createServer } from 'node:http';
import type { ServerResponse } from 'node:http';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { formatSseEvent } from '../src/api/sse.js';
import type { Airlock } from '../src/main.js';
import {
  AUTH_HEADERS, closeAirlock, closeServer, cpuSeconds, createTask, fmt, forkSseClient, goal, isMain, listen,
  loud, printMachine, printTable, RssSampler, sleep, startBenchAirlock, tickerModel, wallNow, withTempDir,
} from './lib.js';
import type { Child } from './lib.js';

const SUBSCRIBERS = 1_000;
const INTERVAL_MS = 10;
const EVENTS = 1_000;
const CONNECT_CONCURRENCY = 100;
const CONNECT_TIMEOUT_MS = 20_000;
/** From the first event; the subscriber process then reports what it has (partial figures). */
const RUN_TIMEOUT_MS = 25_000;
const P99_GOAL_MS = 100;
const RSS_GOAL_MB = 100;

/** What sseClient.ts reports for a fan-out run. */
interface FanoutResult {
  subscribers: number;
  expected: number;
  connected: number;
  complete: number;
  deliveries: number;
  outOfOrder: number;
  errors: number;
  firstError?: string;
  latencyMs: { min: number; p50: number; p99: number; max: number };
  sendRatePerS: number;
  /** CPU seconds the subscriber process used from the first event to the last stream's end. */
  clientCpuS: number;
}

interface PhaseResult extends FanoutResult {
  connectMs: number;
  /** CPU seconds the server process used from the first event to the last stream's end. */
  serverCpuS: number;
  /** The server's event-loop delay during delivery, ms. */
  loopDelayMs: { p99: number; max: number };
  rss: { beforeMb: number; peakMb: number; growthMb: number };
}

// Connects every subscriber, then starts the emitter, and samples this (the server's) process RSS
// from just before the subscribers connect until the last one has finished.
async function measure(url: string, headers: Record<string, string>, startEmitting: () => void): Promise<PhaseResult> {
  const rss = new RssSampler();
  rss.start();
  const client: Child = forkSseClient({ mode: 'fanout', url, headers, subscribers: SUBSCRIBERS, expected: EVENTS, connectConcurrency: CONNECT_CONCURRENCY, timeoutMs: RUN_TIMEOUT_MS });
  try {
    const { connectMs } = await client.message<{ connectMs: number }>('ready', CONNECT_TIMEOUT_MS);
    const cpu = process.cpuUsage();
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    client.process.send({ type: 'start' });
    startEmitting();
    const result = await client.message<FanoutResult>('result', RUN_TIMEOUT_MS + 5_000);
    loop.disable();
    const loopDelayMs = { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 };
    return { ...result, connectMs, serverCpuS: cpuSeconds(cpu), loopDelayMs, rss: rss.stop() };
  } finally {
    rss.stop();
    await client.stop();
  }
}

async function airlockPhase(): Promise<PhaseResult> {
  return withTempDir('airlock-bench-fanout-', async (dir) => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const model = tickerModel({ count: EVENTS, intervalMs: INTERVAL_MS, gate });
    const airlock = await startBenchAirlock(dir, { modelFor: () => model });
    try {
      const id = await createTask(airlock.url, 'fan-out ticker');
      await waitForRunning(airlock, id);
      return await measure(`${airlock.url}/api/v1/tasks/${id}/stream`, AUTH_HEADERS, release);
    } finally {
      release();
      await closeAirlock(airlock);
    }
  });
}

async function waitForRunning(airlock: Airlock, id: string): Promise<void> {
  for (let waited = 0; waited < 5_000; waited += 20) {
    if ((await airlock.store.getTask(id))?.status === 'running') return;
    await sleep(20);
  }
  throw new Error('the fan-out task did not start running within 5 s');
}

// The baseline: the same frames, formatted once per event and written to every open response.
async function baselinePhase(): Promise<PhaseResult> {
  const clients = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform', Connection: 'keep-alive' });
    res.socket?.setNoDelay(true);
    res.write(formatSseEvent({ event: 'history_done', data: { messageCount: 1, isStreaming: true }, id: 1 }));
    clients.add(res);
    res.on('close', () => clients.delete(res));
  });
  let timer: NodeJS.Timeout | undefined;
  // Like the ticker model, an emitter that falls behind sends what is due at once rather than
  // waiting a timer turn per event; otherwise the baseline would fall short of 100 events/s.
  const startEmitting = () => {
    const start = performance.now();
    let i = 0;
    const tick = () => {
      while (i < EVENTS && start + i * INTERVAL_MS <= performance.now()) {
        const frame = formatSseEvent({ event: 'content', data: { text: JSON.stringify({ i, t: wallNow() }), isPartial: true }, id: i + 2 });
        for (const res of clients) res.write(frame);
        i++;
      }
      if (i < EVENTS) {
        timer = setTimeout(tick, Math.max(0, start + i * INTERVAL_MS - performance.now()));
        return;
      }
      const done = formatSseEvent({ event: 'done', data: { finalResponse: `ticker sent ${EVENTS} deltas` }, id: i + 2 });
      for (const res of clients) res.end(done);
    };
    tick();
  };
  const url = await listen(server);
  try {
    return await measure(`${url}/stream`, {}, startEmitting);
  } finally {
    clearTimeout(timer);
    await closeServer(server);
  }
}

function report(airlock: PhaseResult, bare: PhaseResult): void {
  const row = (label: string, get: (r: PhaseResult) => string, note = '') => [label, get(airlock), get(bare), note];
  printTable([
    ['', 'airlock', 'bare http', ''],
    row('subscribers connected', (r) => `${r.connected}/${r.subscribers}`),
    row('connect time (all to history_done), s', (r) => fmt(r.connectMs / 1000, 2)),
    row('events each should get', (r) => `${r.expected} deltas + done`),
    row('subscribers that got every event', (r) => String(r.complete), `goal: all (airlock ${goal(airlock.complete === SUBSCRIBERS)})`),
    row('deliveries received', (r) => `${r.deliveries}/${r.subscribers * r.expected}`),
    row('out-of-order / stream errors', (r) => `${r.outOfOrder} / ${r.errors}`),
    row('achieved send rate, events/s', (r) => fmt(r.sendRatePerS, 1)),
    row('delivery latency p50, ms', (r) => fmt(r.latencyMs.p50, 2)),
    row('delivery latency p99, ms', (r) => fmt(r.latencyMs.p99, 2), `goal <= ${P99_GOAL_MS} (airlock ${goal(airlock.latencyMs.p99 <= P99_GOAL_MS)})`),
    row('delivery latency max, ms', (r) => fmt(r.latencyMs.max, 2)),
    row('delivery latency min, ms', (r) => fmt(r.latencyMs.min, 2)),
    row('server CPU during delivery, s', (r) => fmt(r.serverCpuS, 2)),
    row('server event-loop delay p99 / max, ms', (r) => `${fmt(r.loopDelayMs.p99, 0)} / ${fmt(r.loopDelayMs.max, 0)}`),
    row('subscriber process CPU, s', (r) => fmt(r.clientCpuS, 2)),
    row('server RSS before subscribers, MB', (r) => fmt(r.rss.beforeMb)),
    row('server RSS peak, MB', (r) => fmt(r.rss.peakMb)),
    row('server RSS growth, MB', (r) => fmt(r.rss.growthMb), `goal <= ${RSS_GOAL_MB} (airlock ${goal(airlock.rss.growthMb <= RSS_GOAL_MB)})`),
  ]);
  console.log(`  ratios airlock/bare: p50 ${fmt(airlock.latencyMs.p50 / bare.latencyMs.p50, 2)}, p99 ${fmt(airlock.latencyMs.p99 / bare.latencyMs.p99, 2)}, server CPU ${fmt(airlock.serverCpuS / bare.serverCpuS, 2)}`);
  console.log('  latency: receive time in the subscriber process - send time (airlock: when the model yields, before scrub/persist/');
  console.log('  bus/write; bare: before the write), timeOrigin + now() in each process (clock caveat: bench/README.md).');
  console.log('  the bare phase runs second in the same process: its RSS "before" includes what the airlock phase left.');
  for (const [name, r] of [['airlock', airlock], ['bare http', bare]] as const) {
    if (r.connected < r.subscribers) loud(`${name}: only ${r.connected} of ${r.subscribers} subscribers connected: figures are not for ${SUBSCRIBERS} subscribers`);
    if (r.errors) console.log(`  ${name}: ${r.errors} streams ended abnormally, first: ${r.firstError}`);
  }
}

export async function runFanout(): Promise<void> {
  console.log(`\nstream fan-out: ${SUBSCRIBERS} SSE subscribers (one child process, node:http) on one task, ${EVENTS} events at ${1000 / INTERVAL_MS}/s`);
  printMachine();
  const airlock = await airlockPhase();
  const bare = await baselinePhase();
  report(airlock, bare);
}

if (isMain(import.meta.url)) await runFanout();
