/** Where task runs wait for a slot. The embedded queue is in-process; scale-out puts it in PostgreSQL. */
export interface TaskQueue {
  /** Queues a run of the task; `job` starts when a slot is free. */
  enqueue(taskId: string, job: () => Promise<void>): void;
  /** Takes a queued run that has not started out of the queue; true when there was one. */
  remove(taskId: string): boolean;
  /** Runs executing now. */
  readonly running: number;
  /** Runs waiting for a slot. */
  readonly queued: number;
  /** Resolves when nothing runs or waits. */
  idle(): Promise<void>;
}

/**
 * Runs at most `concurrency` jobs at once, in the order they were queued. Queueing, starting and
 * removing a job are O(1), however long the backlog (a burst of creates can queue tens of
 * thousands of tasks, and a shutdown takes every one of them out).
 */
export class InProcessTaskQueue implements TaskQueue {
  /** Queue order; entries taken out by remove() stay until the head passes them. */
  private order: QueuedJob[] = [];
  private head = 0;
  /** The jobs still waiting, by task. */
  private readonly waiting = new Map<string, QueuedJob>();
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly concurrency: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be a positive integer');
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.size;
  }

  enqueue(taskId: string, job: () => Promise<void>): void {
    if (this.waiting.has(taskId)) throw new Error(`task ${taskId} is already queued`);
    const entry: QueuedJob = { taskId, job, removed: false };
    this.waiting.set(taskId, entry);
    this.order.push(entry);
    this.pump();
  }

  remove(taskId: string): boolean {
    const entry = this.waiting.get(taskId);
    if (!entry) return false;
    entry.removed = true;
    this.waiting.delete(taskId);
    this.settleIdle();
    return true;
  }

  idle(): Promise<void> {
    if (this.active === 0 && this.waiting.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.active < this.concurrency && this.waiting.size > 0) {
      const { taskId, job } = this.next();
      this.waiting.delete(taskId);
      this.active++;
      // A job reports its own failures; the catch only keeps a bug from becoming an unhandled rejection.
      void job().catch(() => {}).finally(() => {
        this.active--;
        this.pump();
        this.settleIdle();
      });
    }
  }

  /** The oldest job not removed; the caller knows there is one. */
  private next(): QueuedJob {
    let entry = this.order[this.head++]!;
    while (entry.removed) entry = this.order[this.head++]!;
    // Drop the passed part now and then, so the array does not grow with everything ever queued.
    if (this.head >= 1024 && this.head * 2 >= this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
    return entry;
  }

  private settleIdle(): void {
    if (this.active > 0 || this.waiting.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

interface QueuedJob {
  taskId: string;
  job: () => Promise<void>;
  removed: boolean;
}
