// The subscriber side of the stream benches, run as a child process (forked by fanout.ts and
// replay.ts) so that parsing SSE does not share the server's event loop. Options arrive as JSON
// in argv[2]; results go back over IPC as { type: 'ready' | 'result' | 'error', ... }.
import http from 'node:http';
import { performance } from 'node:perf_hooks';

/** One SSE event as it arrived. */
interface Frame {
  event: string;
  data: string;
  id: string;
}

/** Fan-out: `subscribers` streams of one URL, each expecting `expected` ticker deltas then `done`. */
interface FanoutOptions {
  mode: 'fanout';
  url: string;
  headers: Record<string, string>;
  subscribers: number;
  expected: number;
  /** Streams being opened at once; more wait, so the server's accept backlog never overflows. */
  connectConcurrency: number;
  /** From the parent's `start` message: past it, report what has arrived and stop. */
  timeoutMs: number;
}

/** Replay: timed sequential requests, to the end of the response (`after`) and to history_done (`fresh`). */
interface ReplayOptions {
  mode: 'replay';
  after: string;
  fresh: string;
  headers: Record<string, string>;
  iterations: number;
  warmup: number;
}

/** Splits an SSE text stream into frames (API.md section 5); comments such as heartbeats are skipped. */
class SseParser {
  private rest = '';

  push(chunk: string, onFrame: (frame: Frame) => void): void {
    const text = this.rest + chunk;
    let start = 0;
    for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n', start)) {
      const frame: Frame = { event: 'message', data: '', id: '' };
      let comment = true;
      for (const line of text.slice(start, end).split('\n')) {
        if (line.startsWith(':')) continue;
        comment = false;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1));
        if (field === 'event') frame.event = value;
        else if (field === 'data') frame.data = frame.data ? `${frame.data}\n${value}` : value;
        else if (field === 'id') frame.id = value;
      }
      if (!comment) onFrame(frame);
      start = end + 2;
    }
    this.rest = text.slice(start);
  }
}

const cpuSince = (start: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
};
const wallNow = () => performance.timeOrigin + performance.now();

/** Opens one stream; calls back per frame with the wall time its chunk arrived. */
function subscribe(
  url: string, headers: Record<string, string>, agent: http.Agent,
  handlers: { frame(frame: Frame, receivedAt: number): void; end(error?: string): void },
): http.ClientRequest {
  let settled = false;
  const end = (error?: string) => {
    if (settled) return;
    settled = true;
    handlers.end(error);
  };
  const req = http.get(url, { headers: { accept: 'text/event-stream', ...headers }, agent }, (res) => {
    if (res.statusCode !== 200) {
      res.resume();
      return end(`HTTP ${res.statusCode}`);
    }
    const parser = new SseParser();
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      const at = wallNow();
      parser.push(chunk, (frame) => handlers.frame(frame, at));
    });
    res.on('end', () => end());
    res.on('error', (err) => end(err.message));
  });
  req.on('error', (err) => end(err.message));
  return req;
}

async function fanout(options: FanoutOptions): Promise<void> {
  const { subscribers: n, expected } = options;
  const agent = new http.Agent({ keepAlive: false, maxSockets: n });
  const latencies = new Float64Array(n * expected);
  let latencyCount = 0;
  let firstSentAt = Infinity;
  let lastSentAt = -Infinity;
  const state = Array.from({ length: n }, () => ({ next: 0, historyDone: false, done: false, ended: false, error: undefined as string | undefined, disorder: 0 }));
  const requests: http.ClientRequest[] = [];
  let launched = 0;
  let connecting = 0;
  let settledConnects = 0;
  let ended = 0;
  let reported = false;
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let timer: NodeJS.Timeout | undefined;
  process.on('message', (msg: { type?: string }) => {
    if (msg.type !== 'start') return;
    cpuAtStart = process.cpuUsage();
    timer = setTimeout(report, options.timeoutMs);
  });

  const report = () => {
    if (reported) return;
    reported = true;
    clearTimeout(timer);
    for (const req of requests) req.destroy();
    agent.destroy();
    const sorted = latencies.subarray(0, latencyCount).sort();
    const pick = (p: number) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : Number.NaN;
    const errors = state.filter((s) => s.error).map((s) => s.error!);
    send({
      type: 'result',
      subscribers: n,
      expected,
      connected: state.filter((s) => s.historyDone).length,
      complete: state.filter((s) => s.next === expected && s.done && !s.disorder).length,
      deliveries: latencyCount,
      outOfOrder: state.reduce((sum, s) => sum + s.disorder, 0),
      errors: errors.length,
      firstError: errors[0],
      latencyMs: { min: sorted.length ? sorted[0]! : Number.NaN, p50: pick(50), p99: pick(99), max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN },
      sendRatePerS: expected > 1 ? ((expected - 1) * 1000) / (lastSentAt - firstSentAt) : Number.NaN,
      clientCpuS: cpuAtStart ? cpuSince(cpuAtStart) : Number.NaN,
    });
  };

  const connectSettled = () => {
    connecting--;
    settledConnects++;
    if (settledConnects === n) send({ type: 'ready', connectMs: performance.now() - connectStart });
    launch();
  };
  const open = (index: number) => {
    const sub = state[index]!;
    requests.push(subscribe(options.url, options.headers, agent, {
      frame(frame, receivedAt) {
        if (frame.event === 'history_done' && !sub.historyDone) {
          sub.historyDone = true;
          connectSettled();
        } else if (frame.event === 'content') {
          const data = JSON.parse(frame.data) as { text: string; isPartial: boolean };
          if (!data.isPartial) return;
          const tick = JSON.parse(data.text) as { i: number; t: number };
          if (tick.i !== sub.next) sub.disorder++;
          sub.next = tick.i + 1;
          latencies[latencyCount++] = receivedAt - tick.t;
          if (tick.i === 0) firstSentAt = Math.min(firstSentAt, tick.t);
          if (tick.i === expected - 1) lastSentAt = Math.max(lastSentAt, tick.t);
        } else if (frame.event === 'done') sub.done = true;
      },
      end(error) {
        sub.error = error ?? (sub.done ? undefined : 'stream ended before done');
        sub.ended = true;
        if (!sub.historyDone) connectSettled();
        if (++ended === n) report();
      },
    }));
  };
  const launch = () => {
    while (connecting < options.connectConcurrency && launched < n) {
      connecting++;
      open(launched++);
    }
  };
  const connectStart = performance.now();
  launch();
}

async function replay(options: ReplayOptions): Promise<void> {
  const agent = new http.Agent({ keepAlive: false });
  const timeOne = (url: string, stopAt: 'end' | 'history_done') => new Promise<{ ms: number; events: number }>((done, fail) => {
    const start = performance.now();
    let events = 0;
    let stoppedMs = -1;
    subscribe(url, options.headers, agent, {
      frame(frame) {
        events++;
        if (stopAt === 'history_done' && frame.event === 'history_done' && stoppedMs < 0) stoppedMs = performance.now() - start;
      },
      end(error) {
        if (error) return fail(new Error(`${url}: ${error}`));
        done({ ms: stopAt === 'end' ? performance.now() - start : stoppedMs, events });
      },
    });
  });
  const after: number[] = [];
  const fresh: number[] = [];
  const afterEvents: number[] = [];
  for (let i = 0; i < options.warmup + options.iterations; i++) {
    const a = await timeOne(options.after, 'end');
    const f = await timeOne(options.fresh, 'history_done');
    if (i < options.warmup) continue;
    after.push(a.ms);
    afterEvents.push(a.events);
    fresh.push(f.ms);
  }
  agent.destroy();
  send({ type: 'result', after, afterEvents, fresh });
}

function send(message: { type: string } & Record<string, unknown>): void {
  if (!process.send) throw new Error('sseClient.ts runs as a forked child (IPC)');
  if (message.type === 'result' || message.type === 'error') process.send(message, () => process.exit(0));
  else process.send(message);
}

const options = JSON.parse(process.argv[2] ?? '{}') as FanoutOptions | ReplayOptions;
process.on('disconnect', () => process.exit(0));
(options.mode === 'fanout' ? fanout(options) : replay(options)).catch((err: unknown) => send({ type: 'error', message: String(err) }));
