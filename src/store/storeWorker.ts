// The store thread of ThreadedStore: one SqliteStore, called in the order the calls arrive.
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteStore } from './sqliteStore.js';
import { serializeError } from './storeThread.js';
import type { FromWorker, StoreAnswer, StoreCall, ToWorker } from './storeThread.js';

const port = parentPort!;
const { path, options } = workerData as { path: string; options: { backgroundCheckpoints?: boolean } };

const store = openStore();

/** The store, or undefined when the database cannot be opened: the opener is told why, and the thread ends. */
function openStore(): SqliteStore | undefined {
  try {
    return new SqliteStore(path, options);
  } catch (err) {
    port.postMessage({ openFailed: serializeError(err) } satisfies FromWorker);
    port.close();
    return undefined;
  }
}

let answers: StoreAnswer[] = [];
let flushing = false;
let closing = false;

function answer(item: StoreAnswer): void {
  answers.push(item);
  scheduleFlush();
}

/**
 * Answers go out in one message, after the commit that settled them. The store commits at
 * setImmediate, so a flush scheduled once a batch of calls has run comes right after that commit
 * and its promise callbacks, in the same check phase: the answers do not wait a loop iteration
 * more, behind the next batch of calls.
 */
function scheduleFlush(): void {
  if (flushing) return;
  flushing = true;
  setImmediate(flush);
}

function flush(): void {
  flushing = false;
  if (!answers.length) return;
  port.postMessage({ answers } satisfies FromWorker);
  answers = [];
}

function run(store: SqliteStore, [id, method, args]: StoreCall): void {
  let result: Promise<unknown>;
  try {
    result = method === 'appendEventSeq'
      ? store.appendEvent(...(args as [string, string, Record<string, unknown>])).then(({ seq, createdAt }) => ({ seq, createdAt }))
      : (store[method] as (...a: unknown[]) => Promise<unknown>).apply(store, args);
  } catch (err) {
    result = Promise.reject(err);
  }
  result.then((value) => answer([id, true, value]), (err: unknown) => answer([id, false, serializeError(err)]));
}

if (store) {
  port.on('message', (message: ToWorker) => {
    if ('calls' in message) {
      for (const call of message.calls) run(store, JSON.parse(call) as StoreCall);
      scheduleFlush();
      return;
    }
    if (closing) return;
    closing = true;
    void store.close().finally(() => {
      // Answers of the last calls go out before the thread ends (closing the port ends it).
      setImmediate(() => {
        flush();
        port.close();
      });
    });
  });

  port.postMessage({ opened: true } satisfies FromWorker);
}
