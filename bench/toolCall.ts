// Tool-call overhead: one task making 200 calls to the echo fixture's `echo` tool through Airlock
// (scripted model, one call per model turn), against 200 direct v2 SDK client calls to the same
// echo HTTP server, measured before and after the Airlock run in the same process.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { performance } from 'node:perf_hooks';
import { startEchoHttpServer } from '../fixtures/mcp/echoServer.js';
import type { EchoHttpServer } from '../fixtures/mcp/echoServer.js';
import { closeAirlock, cpuSeconds, createTask, fmt, goal, isMain, loud, printMachine, printTable, summarize, withTempDir } from './lib.js';
import { cpuMs, createdMs, EventRecorder, failureOf, mean, startAirlockWithServers } from './mcpSupport.js';
import type { TimedEvent } from './mcpSupport.js';

const CALLS = 200;
/** Direct calls made (and not timed) before each timed direct run; the Airlock run gets a warm-up task of as many calls. */
const WARMUP_CALLS = 20;
const GOAL_ADDED_MS = 1;
const TASK_TIMEOUT_MS = 40_000;

/** The scripted model's script: one `/call` line per call; the model makes one call per turn. */
function script(calls: number): string {
  return Array.from({ length: calls }, (_, i) => `/call echo__echo ${JSON.stringify({ text: `x${i}` })}`).join('\n');
}

/** Times `CALLS` sequential `echo` calls from a fresh v2 SDK client ('auto' negotiation, as the pool uses for http). */
async function directCalls(url: string): Promise<{ ms: number[]; cpuMs: number[]; cpuS: number; protocol: string | undefined }> {
  const client = new Client({ name: 'airlock-bench-direct', version: '0.0.0' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  try {
    const ms: number[] = [];
    const cpuPerCall: number[] = [];
    let cpu = process.cpuUsage();
    for (let i = 0; i < WARMUP_CALLS + CALLS; i++) {
      if (i === WARMUP_CALLS) cpu = process.cpuUsage();
      const text = `x${i}`;
      const startCpu = cpuMs();
      const start = performance.now();
      const result = await client.callTool({ name: 'echo', arguments: { text } });
      const elapsed = performance.now() - start;
      const elapsedCpu = cpuMs() - startCpu;
      const got = (result.content as { type: string; text?: string }[] | undefined)?.[0]?.text;
      if (got !== text) throw new Error(`direct call ${i}: echo answered ${JSON.stringify(got)}, not ${JSON.stringify(text)}`);
      if (i >= WARMUP_CALLS) {
        ms.push(elapsed);
        cpuPerCall.push(elapsedCpu);
      }
    }
    return { ms, cpuMs: cpuPerCall, cpuS: cpuSeconds(cpu), protocol: client.getNegotiatedProtocolVersion() };
  } finally {
    await client.close();
  }
}

/** The per-call figures of one finished task, from its tool_call (executing) and tool_result events. */
interface CallTimings {
  /** tool_call → tool_result of each call, from createdAt (whole ms). */
  spanCreated: number[];
  /** The same span from the recorder's performance.now() readings at the same two appends. */
  spanHr: number[];
  /** CPU time of this process over the same span (all threads; the echo server's work included, as in a direct call). */
  spanCpu: number[];
  /** tool_result[i-1] → tool_result[i] (i ≥ 1): model turn + persistence + call. */
  cycleCreated: number[];
  cycleHr: number[];
  /** tool_result[i-1] → tool_call[i]: everything of a turn but the call itself. */
  betweenHr: number[];
}

function callTimings(events: TimedEvent[], calls: number): CallTimings {
  const started = new Map<string, TimedEvent>();
  const pairs: { call: TimedEvent; result: TimedEvent }[] = [];
  for (const event of events) {
    const callId = event.data.callId as string | undefined;
    if (event.type === 'tool_call' && event.data.status === 'executing' && callId) started.set(callId, event);
    if (event.type === 'tool_result' && callId) {
      const call = started.get(callId);
      if (!call) throw new Error(`tool_result ${callId} without a tool_call`);
      if (event.data.status !== 'success') throw new Error(`call ${pairs.length} ended ${String(event.data.status)}: ${String(event.data.output)}`);
      const want = `x${pairs.length}`;
      if (event.data.output !== want) throw new Error(`call ${pairs.length} returned ${JSON.stringify(event.data.output)}, not ${JSON.stringify(want)}`);
      pairs.push({ call, result: event });
    }
  }
  if (pairs.length !== calls) throw new Error(`the task made ${pairs.length} tool calls, not ${calls}`);
  const timings: CallTimings = { spanCreated: [], spanHr: [], spanCpu: [], cycleCreated: [], cycleHr: [], betweenHr: [] };
  pairs.forEach(({ call, result }, i) => {
    timings.spanCreated.push(createdMs(result) - createdMs(call));
    timings.spanHr.push(result.hr - call.hr);
    timings.spanCpu.push(result.cpu - call.cpu);
    const previous = pairs[i - 1]?.result;
    if (!previous) return;
    timings.cycleCreated.push(createdMs(result) - createdMs(previous));
    timings.cycleHr.push(result.hr - previous.hr);
    timings.betweenHr.push(call.hr - previous.hr);
  });
  return timings;
}

/** Runs one scripted task of `calls` echo calls to completion; returns its events. */
async function runCallsTask(baseUrl: string, recorder: EventRecorder, calls: number): Promise<{ events: TimedEvent[]; wallMs: number; cpuS: number }> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const id = await createTask(baseUrl, script(calls));
  const events = await recorder.finished(id, TASK_TIMEOUT_MS);
  const wallMs = performance.now() - start;
  const cpuS = cpuSeconds(cpu);
  const failure = failureOf(events);
  if (failure) throw new Error(`the ${calls}-call task failed: ${failure}`);
  return { events, wallMs, cpuS };
}

export async function runToolCall(): Promise<void> {
  console.log(`\ntool-call overhead: one task of ${CALLS} echo calls through Airlock (scripted model, one call per turn) vs ${CALLS} direct v2 SDK calls, same echo HTTP server, same process`);
  printMachine();
  let echo: EchoHttpServer | undefined;
  try {
    echo = await startEchoHttpServer();
    const before = await directCalls(echo.url);

    const airlockRun = await withTempDir('airlock-bench-toolcall-', async (dir) => {
      const airlock = await startAirlockWithServers(dir, { echo: { type: 'http', url: echo!.url } }, { tasks: { maxTurns: CALLS + 1 } });
      try {
        const recorder = new EventRecorder(airlock.store);
        await runCallsTask(airlock.url, recorder, WARMUP_CALLS);
        const run = await runCallsTask(airlock.url, recorder, CALLS);
        return { ...run, pool: airlock.pool.stats() };
      } finally {
        await closeAirlock(airlock);
      }
    });

    const after = await directCalls(echo.url);
    const t = callTimings(airlockRun.events, CALLS);

    const direct = { before: summarize(before.ms), after: summarize(after.ms), both: summarize([...before.ms, ...after.ms]) };
    const directMean = mean([...before.ms, ...after.ms]);
    const span = { created: summarize(t.spanCreated), hr: summarize(t.spanHr) };
    const cycle = { created: summarize(t.cycleCreated), hr: summarize(t.cycleHr) };
    const between = summarize(t.betweenHr);
    const directCpuAll = [...before.cpuMs, ...after.cpuMs];
    const directCpu = summarize(directCpuAll);
    const spanCpu = summarize(t.spanCpu);
    const addedSpanHr = span.hr.median - direct.both.median;
    const addedCycleHr = cycle.hr.median - direct.both.median;
    const ratio = (value: number) => fmt(value / direct.both.median, 1);

    console.log(`  echo server: ${echo.sessions} MCP sessions, ${echo.connections} TCP connections (direct before, Airlock, direct after); negotiated ${before.protocol ?? '?'} (direct), pool connects ${airlockRun.pool.connects}`);
    console.log(`  Airlock task: ${CALLS} calls in ${fmt(airlockRun.wallMs)} ms from POST /tasks to done (${fmt(airlockRun.wallMs / CALLS, 2)} ms per call), after a ${WARMUP_CALLS}-call warm-up task; each direct run: ${WARMUP_CALLS} untimed warm-up calls first`);
    printTable([
      ['', 'median ms', 'p95 ms', 'mean ms', 'n', 'ratio (median)'],
      ['direct SDK call, before the Airlock run', fmt(direct.before.median, 3), fmt(direct.before.p95, 3), fmt(mean(before.ms), 3), String(before.ms.length), ratio(direct.before.median)],
      ['direct SDK call, after the Airlock run', fmt(direct.after.median, 3), fmt(direct.after.p95, 3), fmt(mean(after.ms), 3), String(after.ms.length), ratio(direct.after.median)],
      ['direct SDK call, both runs (the baseline)', fmt(direct.both.median, 3), fmt(direct.both.p95, 3), fmt(directMean, 3), String(before.ms.length + after.ms.length), '1.0'],
      ['airlock call span tool_call→tool_result, createdAt', fmt(span.created.median, 0), fmt(span.created.p95, 0), fmt(mean(t.spanCreated), 3), String(t.spanCreated.length), ratio(span.created.median)],
      ['airlock call span, performance.now()', fmt(span.hr.median, 3), fmt(span.hr.p95, 3), fmt(mean(t.spanHr), 3), String(t.spanHr.length), ratio(span.hr.median)],
      ['airlock per-turn cycle tool_result→tool_result, createdAt', fmt(cycle.created.median, 0), fmt(cycle.created.p95, 0), fmt(mean(t.cycleCreated), 3), String(t.cycleCreated.length), ratio(cycle.created.median)],
      ['airlock per-turn cycle, performance.now()', fmt(cycle.hr.median, 3), fmt(cycle.hr.p95, 3), fmt(mean(t.cycleHr), 3), String(t.cycleHr.length), ratio(cycle.hr.median)],
      ['  of which tool_result→next tool_call (no call), performance.now()', fmt(between.median, 3), fmt(between.p95, 3), fmt(mean(t.betweenHr), 3), String(t.betweenHr.length), ''],
      ['direct SDK call, CPU time, both runs', fmt(directCpu.median, 3), fmt(directCpu.p95, 3), fmt(mean(directCpuAll), 3), String(directCpuAll.length), '1.0'],
      ['airlock call span, CPU time', fmt(spanCpu.median, 3), fmt(spanCpu.p95, 3), fmt(mean(t.spanCpu), 3), String(t.spanCpu.length), fmt(spanCpu.median / directCpu.median, 1)],
    ]);
    printTable([
      ['added per call over a direct call', 'median − median', 'mean − mean', ''],
      ['call span, performance.now()', fmt(addedSpanHr, 3), fmt(mean(t.spanHr) - directMean, 3), `goal <= ${GOAL_ADDED_MS} ms (${goal(addedSpanHr <= GOAL_ADDED_MS)}): the goal is judged on this row's median`],
      ['call span, createdAt', fmt(span.created.median - direct.both.median, 3), fmt(mean(t.spanCreated) - directMean, 3), ''],
      ['call span, CPU time', fmt(spanCpu.median - directCpu.median, 3), fmt(mean(t.spanCpu) - mean(directCpuAll), 3), 'steadier on a busy machine: CPU the process spent, not time waited for a core'],
      ['per-turn cycle, performance.now()', fmt(addedCycleHr, 3), fmt(mean(t.cycleHr) - directMean, 3), 'for information: includes the scripted model turn and 4 store commits'],
      ['per-turn cycle, createdAt', fmt(cycle.created.median - direct.both.median, 3), fmt(mean(t.cycleCreated) - directMean, 3), ''],
    ]);
    const early = summarize(t.cycleHr.slice(0, 49));
    const late = summarize(t.cycleHr.slice(-50));
    console.log(`  per-turn cycle by position (performance.now()): turns 2–50 median ${fmt(early.median, 3)} ms, turns ${CALLS - 49}–${CALLS} median ${fmt(late.median, 3)} ms (${fmt(late.median / early.median, 2)}x); a ratio well above 1 is work that grows with the conversation`);
    const cpuDirect = ((before.cpuS + after.cpuS) * 1000) / (before.ms.length + after.ms.length);
    const cpuAirlock = (airlockRun.cpuS * 1000) / CALLS;
    console.log(`  CPU of this process (client, echo server and Airlock alike) per call: direct ${fmt((before.cpuS * 1000) / before.ms.length, 3)} ms before, ${fmt((after.cpuS * 1000) / after.ms.length, 3)} ms after;`);
    console.log(`  Airlock ${fmt(cpuAirlock, 3)} ms per turn (POST to done over ${CALLS}), ${fmt(cpuAirlock / cpuDirect, 1)}x direct, added ${fmt(cpuAirlock - cpuDirect, 3)} ms: steadier than wall clock on a busy machine`);
    const drift = direct.after.median - direct.before.median;
    console.log(`  drift: the direct median moved ${fmt(drift, 3)} ms (${fmt(direct.after.median / direct.before.median, 2)}x) from before to after the Airlock run`);
    if (Math.abs(addedSpanHr) <= Math.abs(drift)) console.log(`  the added call-span figure (${fmt(addedSpanHr, 3)} ms) is within the baseline's own drift (${fmt(Math.abs(drift), 3)} ms): on this run it cannot be told from noise`);
    console.log('  resolution: createdAt is an ISO time with whole milliseconds, too coarse for sub-ms spans one by one: its medians and p95s');
    console.log('  move in 1 ms steps, while its means over many calls are not biased by the rounding. The performance.now() rows read a');
    console.log('  sub-ms clock at the same two appends (the bench wraps the store\'s appendEvent, which stamps createdAt; nothing else is changed).');
    console.log('  The span includes the tool_call event\'s group commit, routing, the SDK call and the echo server\'s work, and scrubbing the result.');
  } catch (err) {
    loud(`tool-call bench failed: ${(err as Error).message}`);
  } finally {
    await echo?.close();
  }
}

if (isMain(import.meta.url)) await runToolCall();
