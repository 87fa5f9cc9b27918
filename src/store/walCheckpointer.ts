import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often, at most, the store asks for a checkpoint while it writes. */
export const CHECKPOINT_INTERVAL_MS = 100;
/**
 * The WAL size (in pages) at which the writing connection checkpoints by itself: a backstop for a
 * checkpointer that has fallen behind or stopped. SQLite's default is 1,000 pages.
 */
export const BACKSTOP_CHECKPOINT_PAGES = 10_000;

// Plain JavaScript, so that the worker runs whether or not TypeScript is loaded in worker threads.
// PASSIVE copies what it can without waiting for the writer or readers. A checkpoint that fails
// (the writer's own backstop checkpoint running, a full disk) is left to the next request: the
// writer's commits report a broken disk, and its backstop bounds the WAL.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
parentPort.on('message', (message) => {
  if (message === 'stop') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {}
  parentPort.postMessage('done');
});
`;

/**
 * Checkpoints a WAL database on a worker thread with its own connection, so that the event loop
 * does not copy pages into the database file or wait for its fsync. The writer asks after its
 * commits (request), at most every CHECKPOINT_INTERVAL_MS; one checkpoint runs at a time.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private running = false;
  private lastRequest = 0;
  private failed = false;
  private readonly exited: Promise<void>;

  /** Starts the worker on the database at `path`; `onFailure` is told once if the worker dies. */
  constructor(path: string, private readonly onFailure: (err: Error) => void) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driver } });
    this.worker.unref();
    this.worker.on('message', () => (this.running = false));
    this.worker.on('error', (err) => this.fail(err));
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
  }

  /** Asks for a checkpoint unless one is running or one was asked for less than CHECKPOINT_INTERVAL_MS ago. */
  request(now = performance.now()): void {
    if (this.running || this.failed || now - this.lastRequest < CHECKPOINT_INTERVAL_MS) return;
    this.running = true;
    this.lastRequest = now;
    this.worker.postMessage('checkpoint');
  }

  /** Stops the worker and closes its connection. */
  async close(): Promise<void> {
    if (!this.failed) this.worker.postMessage('stop');
    await this.exited;
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = true;
    void this.worker.terminate();
    this.onFailure(err);
  }
}
