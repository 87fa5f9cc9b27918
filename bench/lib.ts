import { fork, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadConfig } from '../src/config.js';
import { startAirlock } from '../src/main.js';
import type { Airlock, AirlockOverrides } from '../src/main.js';
import type { ModelClient, ModelRequest, ModelStreamEvent } from '../src/model/modelClient.js';

/** The repository root: children run from here so that `--import tsx` resolves. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** A throwaway key, registered as the bootstrap key of each bench's fresh data dir. */
export const BENCH_API_KEY = `airlock_${randomBytes(32).toString('hex')}`;
export const AUTH_HEADERS = { authorization: `Bearer ${BENCH_API_KEY}` };
const LOOPBACK = '127.0.0.1';

/** True when the module at `url` is the script node was started with. */
export function isMain(url: string): boolean {
  return Boolean(process.argv[1]) && url === pathToFileURL(resolve(process.argv[1]!)).href;
}

/** Wall-clock milliseconds with sub-ms resolution; comparable across processes on one host. */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Runs `fn` with a fresh temporary directory that is deleted afterwards, whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Airlock in-process on 127.0.0.1, port 0, silent, with the bench key and the given overrides.
 * `env` adds to the environment the config is loaded from (e.g. AIRLOCK_CONFIG for a config file).
 */
export function startBenchAirlock(dataDir: string, overrides: AirlockOverrides = {}, env: Record<string, string> = {}): Promise<Airlock> {
  const config = loadConfig({
    ...env, AIRLOCK_DATA_DIR: dataDir, HOST: LOOPBACK, PORT: '0', AIRLOCK_BOOTSTRAP_API_KEY: BENCH_API_KEY, AIRLOCK_LOG_LEVEL: 'silent',
  });
  return startAirlock(config, { announce: () => {}, ...overrides });
}

/**
 * Closes Airlock while holding a ref'd timer: TaskService.shutdown waits out its grace period on an
 * unref'd timer, so once the server has closed, node could exit with close() unsettled and this
 * bench's cleanup (temp dir, children) skipped.
 */
export async function closeAirlock(airlock: Airlock): Promise<void> {
  const keepAlive = setInterval(() => {}, 1_000);
  try {
    await airlock.close();
  } finally {
    clearInterval(keepAlive);
  }
}

/** POST /api/v1/tasks; returns the new task's id. */
export async function createTask(baseUrl: string, message: string): Promise<string> {
  const res = await fetch(`${baseUrl}/api/v1/tasks`, { method: 'POST', headers: { ...AUTH_HEADERS, 'content-type': 'application/json' }, body: JSON.stringify({ message }) });
  const body = (await res.json()) as { success: boolean; data?: { id: string } };
  if (res.status !== 201 || !body.data) throw new Error(`POST /tasks answered ${res.status}: ${JSON.stringify(body)}`);
  return body.data.id;
}

/** Waits until /healthz shows no running or queued task; returns the wait in ms, or -1 past `timeoutMs`. */
export async function waitForIdle(baseUrl: string, timeoutMs: number, stallMs = Infinity): Promise<{ ms: number; running: number; queued: number }> {
  const start = performance.now();
  let last = { left: -1, at: start };
  for (;;) {
    const health = (await (await fetch(`${baseUrl}/healthz`)).json()) as { data: { runningTasks: number; queuedTasks: number } };
    const { runningTasks: running, queuedTasks: queued } = health.data;
    const now = performance.now();
    if (running === 0 && queued === 0) return { ms: now - start, running, queued };
    if (running + queued !== last.left) last = { left: running + queued, at: now };
    // A backlog that does not move (tasks that wait in their model turn) will not drain in time.
    if (now - start > timeoutMs || now - last.at > stallMs) return { ms: -1, running, queued };
    await sleep(50);
  }
}

/** Listens on 127.0.0.1, port 0; returns the base URL. */
export async function listen(server: Server): Promise<string> {
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(0, LOOPBACK, () => done());
  });
  return `http://${LOOPBACK}:${(server.address() as AddressInfo).port}`;
}

const AUTOCANNON = createRequire(import.meta.url).resolve('autocannon');

/** The part of autocannon's --json result the benches print. */
export interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  '2xx': number;
  statusCodeStats: Record<string, { count: number }>;
}

/**
 * Loads `url` with autocannon in a child process (its CLI with --json), with the bench key as
 * Bearer: a POST of the JSON `body` when given, else a GET. The load generator thus shares
 * neither the server's event loop nor its heap.
 */
export async function autocannon(url: string, options: { connections: number; durationS: number; body?: string }): Promise<CannonResult> {
  const args = [AUTOCANNON, '--json', '--no-progress', '-c', String(options.connections), '-p', '1', '-d', String(options.durationS), '-H', `Authorization=${AUTH_HEADERS.authorization}`];
  if (options.body !== undefined) args.push('-m', 'POST', '-H', 'Content-Type=application/json', '-b', options.body);
  const { code, stdout, stderr } = await runCommand([...args, url], (options.durationS + 20) * 1000);
  if (code !== 0) throw new Error(`autocannon exited with ${code}: ${stderr.trim()}`);
  return JSON.parse(stdout) as CannonResult;
}

/** Closes a server and every connection it still holds. */
export async function closeServer(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((done) => server.close(() => done()));
  server.closeAllConnections();
  await closed;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/**
 * A model that streams `count` text deltas, each the JSON `{"i":n,"t":<wallNow at send>}`, one per
 * `intervalMs` (0: as fast as the runner takes them), after `gate` resolves; then a short final text.
 * The final text is short on purpose: the benches measure delta fan-out, not one large frame.
 */
export function tickerModel(options: { count: number; intervalMs: number; gate?: Promise<void> }): ModelClient {
  return {
    description: 'bench:ticker',
    async *stream(request: ModelRequest): AsyncGenerator<ModelStreamEvent> {
      if (options.gate) await Promise.race([options.gate, aborted(request.signal)]);
      const start = performance.now();
      for (let i = 0; i < options.count; i++) {
        request.signal.throwIfAborted();
        yield { type: 'text_delta', text: JSON.stringify({ i, t: wallNow() }) };
        const wait = start + (i + 1) * options.intervalMs - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const text = `ticker sent ${options.count} deltas`;
      yield { type: 'turn_end', content: [{ type: 'text', text }], stopReason: 'end_turn', usage: { inputTokens: 0, outputTokens: options.count } };
    },
  };
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, fail) => {
    if (signal.aborted) fail(signal.reason);
    else signal.addEventListener('abort', () => fail(signal.reason), { once: true });
  });
}

/** A child process and the IPC messages it has sent so far. */
export interface Child {
  readonly process: ChildProcess;
  /** The first message of this type (already received or still to come); rejects on exit or timeout. */
  message<T>(type: string, timeoutMs: number): Promise<T>;
  /** Stops the child by its PID (TERM, then KILL after 2 s) unless it has exited. */
  stop(): Promise<void>;
}

/** Forks `bench/sseClient.ts` under tsx with its options as JSON. */
export function forkSseClient(options: object): Child {
  const child = fork(join(ROOT, 'bench/sseClient.ts'), [JSON.stringify(options)], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const received: { type: string }[] = [];
  const listeners = new Set<() => void>();
  child.on('message', (msg: { type: string }) => {
    received.push(msg);
    for (const listener of [...listeners]) listener();
  });
  child.on('exit', () => { for (const listener of [...listeners]) listener(); });
  return {
    process: child,
    message<T>(type: string, timeoutMs: number): Promise<T> {
      return new Promise<T>((done, fail) => {
        const check = () => {
          const found = received.find((msg) => msg.type === type);
          const error = received.find((msg) => msg.type === 'error') as { message?: string } | undefined;
          if (found) finish(() => done(found as T));
          else if (error) finish(() => fail(new Error(`sseClient: ${error.message}`)));
          else if (child.exitCode !== null || child.signalCode !== null) finish(() => fail(new Error(`sseClient exited (${child.exitCode ?? child.signalCode}) before "${type}"`)));
        };
        const timer = setTimeout(() => finish(() => fail(new Error(`sseClient: no "${type}" within ${timeoutMs} ms`))), timeoutMs);
        const finish = (settle: () => void) => { clearTimeout(timer); listeners.delete(check); settle(); };
        listeners.add(check);
        check();
      });
    },
    stop: () => stopChild(child),
  };
}

/** Runs a command to completion (killed past `timeoutMs`); returns its exit code and output. */
export function runCommand(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => void stopChild(child), timeoutMs);
  return new Promise((done) => child.on('close', (code) => {
    clearTimeout(timer);
    done({ code, stdout, stderr });
  }));
}

/** Stops a child by its PID: SIGTERM, then SIGKILL if it is still there after 2 s. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
  await exited;
  clearTimeout(timer);
}

/** Samples this process's RSS from `start()` until `stop()`; reports the first sample and the peak. */
export class RssSampler {
  private before = 0;
  private peak = 0;
  private timer: NodeJS.Timeout | undefined;

  start(intervalMs = 50): void {
    this.before = this.peak = process.memoryUsage.rss();
    this.timer = setInterval(() => (this.peak = Math.max(this.peak, process.memoryUsage.rss())), intervalMs);
  }

  stop(): { beforeMb: number; peakMb: number; growthMb: number } {
    clearInterval(this.timer);
    this.peak = Math.max(this.peak, process.memoryUsage.rss());
    const mb = (bytes: number) => bytes / 1024 / 1024;
    return { beforeMb: mb(this.before), peakMb: mb(this.peak), growthMb: mb(this.peak - this.before) };
  }
}

/** CPU seconds (user + system) this process has used since `since` (a process.cpuUsage() reading). */
export function cpuSeconds(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6;
}

/**
 * CPU seconds the main thread (the event loop) has used so far, from /proc (Linux; NaN elsewhere).
 * process.cpuUsage() counts every thread of the process: the store thread, the WAL checkpointer and
 * V8's GC helpers too.
 */
export function mainThreadCpuSeconds(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}
// USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK).
const CLOCK_TICKS_PER_S = 100;

/**
 * Prints the machine's cores and load: wall-clock figures on a busy machine (another build, another
 * bench) swing widely, while CPU-time figures hold up better; the benches print both.
 */
export function printMachine(): void {
  const cores = availableParallelism();
  const [load1] = loadavg();
  console.log(`  machine: ${cores} cores, load average (1 min) ${fmt(load1 ?? 0, 2)} at start`);
  if ((load1 ?? 0) > cores / 2) console.log(`  WARNING: the machine is busy with other work (load ${fmt(load1 ?? 0, 2)} on ${cores} cores): wall-clock figures below are noisy; compare CPU figures and ratios`);
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Median and p95 of some timings. */
export function summarize(values: number[]): { median: number; p95: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), p95: percentile(sorted, 95) };
}

export function fmt(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

/** Prints rows as left-aligned columns, the first row being the header. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length)));
  for (const row of rows) console.log(`  ${row.map((cell, col) => cell.padEnd(widths[col]!)).join('  ').trimEnd()}`);
}

/** "met" / "MISSED" for a goal, printed beside a figure (never asserted). */
export function goal(met: boolean): string {
  return met ? 'met' : 'MISSED';
}

/** A banner that cannot be overlooked, for runs whose figures are not trustworthy. */
export function loud(message: string): void {
  const bar = '!'.repeat(Math.min(100, message.length + 8));
  console.log(`\n${bar}\n!!! ${message}\n${bar}\n`);
  process.exitCode = 1;
}
