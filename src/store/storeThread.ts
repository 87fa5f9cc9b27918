import { Worker } from 'node:worker_threads';
import { RUNS_FROM_BUILD } from '../projectRoot.js';
import type { Store } from './store.js';
import type { EventRecord } from './store.js';
import { eventFromRow } from './sqliteStore.js';
import type { EventRow } from './sqliteStore.js';

/** The store methods a ThreadedStore forwards, by name. */
type StoreMethod = Exclude<keyof Store, 'close'>;

/** One call as it crosses to the worker: [id, method, args]. */
export type StoreCall = [id: number, method: StoreMethod | 'appendEventSeq' | 'listEventRows', args: unknown[]];
/** One answer from the worker: [id, ok, value or error]. */
export type StoreAnswer = [id: number, ok: true, value: unknown] | [id: number, ok: false, error: SerializedError];
export interface SerializedError {
  name: string;
  message: string;
  code?: unknown;
  stack?: string;
}

/**
 * Messages to the worker: a batch of calls, each as the JSON text of a StoreCall, or the order to
 * close. JSON text costs the event loop less than a structured clone of the same records, and
 * every argument of the Store is JSON data (undefined fields mean "not given", as JSON drops them).
 */
export type ToWorker = { calls: string[] } | { close: true };
/** Messages from the worker: answers, or the store's open result. */
export type FromWorker = { answers: StoreAnswer[] } | { opened: true } | { openFailed: SerializedError };

/**
 * The Store on a thread of its own: every call is sent to a worker that runs the SqliteStore (its
 * statements, group commits and WAL checkpoints), so the event loop that serves HTTP does not.
 * Calls cross in call order and the worker makes them in that order on its one connection, so
 * everything the Store contract promises holds as it does in-process: writes apply in call order,
 * a read sees every write called before it, a write resolves once committed. The calls of one
 * event-loop turn cross as one message, and so do the answers.
 */
export class ThreadedStore implements Store {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  private batch: string[] = [];
  private flushing = false;
  private failure: Error | null = null;
  private closed: Promise<void> | null = null;
  private readonly exited: Promise<void>;

  private constructor(worker: Worker, private readonly onFailure: (err: Error) => void) {
    this.worker = worker;
    this.worker.on('message', (message: FromWorker) => {
      if ('answers' in message) this.answer(message.answers);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.exited = new Promise((resolve) => this.worker.once('exit', () => {
      this.fail(new Error('the store thread exited'));
      resolve();
    }));
  }

  /**
   * Starts the worker and opens (migrating if needed) the database at `path` in it. `onFailure` is
   * told once if the thread dies while the store is open: every call fails from then on.
   */
  static async open(path: string, options: { backgroundCheckpoints?: boolean; onFailure?: (err: Error) => void } = {}): Promise<ThreadedStore> {
    const { onFailure = () => {}, ...storeOptions } = options;
    // The build starts the compiled worker; a checkout's TypeScript needs the bootstrap to load tsx.
    const entry = RUNS_FROM_BUILD ? './storeWorker.js' : './storeWorkerBootstrap.mjs';
    const worker = new Worker(new URL(entry, import.meta.url), { workerData: { path, options: storeOptions } });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: FromWorker) => {
        if ('opened' in message) done(null);
        else if ('openFailed' in message) done(toError(message.openFailed));
      };
      const onError = (err: Error) => done(err);
      const onExit = () => done(new Error('the store thread exited while opening the database'));
      const done = (err: Error | null) => {
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        if (err) {
          void worker.terminate();
          reject(err);
        } else resolve();
      };
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
    });
    return new ThreadedStore(worker, onFailure);
  }

  private call<T>(method: StoreCall[1], args: unknown[]): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the store is closed'));
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    // Trailing optional arguments left out stay left out (JSON would make them null).
    let count = args.length;
    while (count > 0 && args[count - 1] === undefined) count--;
    let text: string;
    try {
      text = JSON.stringify([id, method, count === args.length ? args : args.slice(0, count)] satisfies StoreCall);
    } catch (err) {
      return Promise.reject(err);
    }
    this.batch.push(text);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flush());
    }
    return new Promise<T>((resolve, reject) => this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject }));
  }

  private flush(): void {
    this.flushing = false;
    if (!this.batch.length) return;
    const calls = this.batch;
    this.batch = [];
    this.worker.postMessage({ calls } satisfies ToWorker);
  }

  private answer(answers: StoreAnswer[]): void {
    for (const [id, ok, value] of answers) {
      const waiter = this.pending.get(id);
      if (!waiter) continue;
      this.pending.delete(id);
      if (ok) waiter.resolve(value);
      else waiter.reject(toError(value as SerializedError));
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    if (!this.closed) this.onFailure(err);
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
  }

  ensureProject(...args: Parameters<Store['ensureProject']>) { return this.call<void>('ensureProject', args); }
  createApiKey(...args: Parameters<Store['createApiKey']>) { return this.call<void>('createApiKey', args); }
  findApiKeyByHash(...args: Parameters<Store['findApiKeyByHash']>) { return this.call<Awaited<ReturnType<Store['findApiKeyByHash']>>>('findApiKeyByHash', args); }
  listApiKeys(...args: Parameters<Store['listApiKeys']>) { return this.call<Awaited<ReturnType<Store['listApiKeys']>>>('listApiKeys', args); }
  revokeApiKey(...args: Parameters<Store['revokeApiKey']>) { return this.call<boolean>('revokeApiKey', args); }
  countApiKeys(...args: Parameters<Store['countApiKeys']>) { return this.call<number>('countApiKeys', args); }
  createTask(...args: Parameters<Store['createTask']>) { return this.call<void>('createTask', args); }
  getTask(...args: Parameters<Store['getTask']>) { return this.call<Awaited<ReturnType<Store['getTask']>>>('getTask', args); }
  listTasks(...args: Parameters<Store['listTasks']>) { return this.call<Awaited<ReturnType<Store['listTasks']>>>('listTasks', args); }
  updateTask(...args: Parameters<Store['updateTask']>) { return this.call<void>('updateTask', args); }
  transitionTask(...args: Parameters<Store['transitionTask']>) { return this.call<boolean>('transitionTask', args); }
  findTasksByStatus(...args: Parameters<Store['findTasksByStatus']>) { return this.call<Awaited<ReturnType<Store['findTasksByStatus']>>>('findTasksByStatus', args); }
  appendMessage(...args: Parameters<Store['appendMessage']>) { return this.call<Awaited<ReturnType<Store['appendMessage']>>>('appendMessage', args); }
  listMessages(...args: Parameters<Store['listMessages']>) { return this.call<Awaited<ReturnType<Store['listMessages']>>>('listMessages', args); }
  snapshot(...args: Parameters<Store['snapshot']>) { return this.call<Awaited<ReturnType<Store['snapshot']>>>('snapshot', args); }
  createApproval(...args: Parameters<Store['createApproval']>) { return this.call<void>('createApproval', args); }
  decideApproval(...args: Parameters<Store['decideApproval']>) { return this.call<boolean>('decideApproval', args); }
  getApproval(...args: Parameters<Store['getApproval']>) { return this.call<Awaited<ReturnType<Store['getApproval']>>>('getApproval', args); }
  listApprovals(...args: Parameters<Store['listApprovals']>) { return this.call<Awaited<ReturnType<Store['listApprovals']>>>('listApprovals', args); }
  ping() { return this.call<void>('ping', []); }

  /** The event's data stays here: only its sequence number and time come back. */
  async appendEvent(taskId: string, type: string, data: Record<string, unknown>): Promise<EventRecord> {
    const { seq, createdAt } = await this.call<{ seq: number; createdAt: string }>('appendEventSeq', [taskId, type, data]);
    return { taskId, seq, type, data, createdAt };
  }

  /** Events cross as stored, their data as JSON text, and are parsed here: cheaper than cloning objects. */
  async listEvents(...args: Parameters<Store['listEvents']>): Promise<EventRecord[]> {
    const rows = await this.call<EventRow[]>('listEventRows', args);
    return rows.map((row) => eventFromRow(args[0], row));
  }

  /** Waits for the calls made so far, then closes the database and ends the thread. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.flush();
      if (!this.failure) {
        this.worker.postMessage({ close: true } satisfies ToWorker);
        await this.exited;
      }
    })();
    return this.closed;
  }
}

function toError(serialized: SerializedError): Error {
  const err = new Error(serialized.message);
  err.name = serialized.name;
  if (serialized.code !== undefined) (err as Error & { code?: unknown }).code = serialized.code;
  if (serialized.stack) err.stack = serialized.stack;
  return err;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    return { name: err.name, message: err.message, ...(code !== undefined ? { code } : {}), ...(err.stack ? { stack: err.stack } : {}) };
  }
  return { name: 'Error', message: String(err) };
}
