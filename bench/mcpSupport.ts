// Shared by the MCP benches (toolCall.ts, warmPool.ts): Airlock with a config file naming MCP
// servers, and a recorder that notes when each event is appended, on a sub-millisecond clock.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { McpServerConfig } from '../src/config.js';
import type { Airlock } from '../src/main.js';
import type { EventRecord, Store } from '../src/store/store.js';
import { startBenchAirlock } from './lib.js';

/**
 * Airlock whose default project has exactly the given MCP servers (no built-in workspace tools),
 * configured the way an operator would: an airlock.config.json in `dir`, named by AIRLOCK_CONFIG.
 * `dir` is the bench's temporary directory; the data dir is `dir/data`.
 */
export async function startAirlockWithServers(dir: string, mcpServers: Record<string, McpServerConfig>, extra: { tasks?: Record<string, unknown>; mcp?: Record<string, unknown> } = {}): Promise<Airlock> {
  const configPath = join(dir, 'airlock.config.json');
  const file = { ...(extra.tasks ? { tasks: extra.tasks } : {}), ...(extra.mcp ? { mcp: extra.mcp } : {}), projects: { default: { builtinTools: false, mcpServers } } };
  await writeFile(configPath, JSON.stringify(file));
  return startBenchAirlock(join(dir, 'data'), {}, { AIRLOCK_CONFIG: configPath });
}

/** A stored event, with the performance.now() reading taken as the store was asked to append it. */
export interface TimedEvent extends EventRecord {
  /** performance.now() when appendEvent was called: the moment the store stamps `createdAt` (ms resolution). */
  hr: number;
  /** This process's CPU time (user + system, all threads) at the same moment, in ms. */
  cpu: number;
}

/**
 * Records every event Airlock appends, by wrapping its store's `appendEvent` (the one call that
 * stamps `createdAt`). The wrapper adds a performance.now() and a process.cpuUsage() reading and
 * one promise hop per event; the router, pool, runner and store code stay the real ones.
 */
export class EventRecorder {
  private readonly byTask = new Map<string, TimedEvent[]>();
  private readonly waiters = new Set<() => void>();

  constructor(store: Store) {
    const append = store.appendEvent.bind(store);
    store.appendEvent = async (taskId, type, data) => {
      const hr = performance.now();
      const cpu = cpuMs();
      const event = await append(taskId, type, data);
      let list = this.byTask.get(taskId);
      if (!list) this.byTask.set(taskId, (list = []));
      list.push({ ...event, hr, cpu });
      for (const wake of [...this.waiters]) wake();
      return event;
    };
  }

  /** The task's events so far, in sequence order. */
  events(taskId: string): TimedEvent[] {
    return [...(this.byTask.get(taskId) ?? [])].sort((a, b) => a.seq - b.seq);
  }

  /** Resolves with the task's events once it has appended `done` or `error`; rejects past `timeoutMs`. */
  finished(taskId: string, timeoutMs: number): Promise<TimedEvent[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const events = this.byTask.get(taskId);
        if (!events?.some((e) => e.type === 'done' || e.type === 'error')) return;
        finish();
        resolve(this.events(taskId));
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`task ${taskId} did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

/** The error text of a task that ended in `error`, or undefined when it ended with `done`. */
export function failureOf(events: TimedEvent[]): string | undefined {
  const error = events.find((e) => e.type === 'error');
  return error ? JSON.stringify(error.data) : undefined;
}

/** Milliseconds of an ISO `createdAt` (the store's clock: Date, 1 ms resolution). */
export function createdMs(event: EventRecord): number {
  return Date.parse(event.createdAt);
}

/** This process's CPU time so far (user + system, all threads), ms with µs resolution. */
export function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

export function mean(values: number[]): number {
  return values.length ? values.reduce((sum, v) => sum + v, 0) / values.length : Number.NaN;
}
