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

/** Runs at most `concurrency` jobs at once, in the order they were queued. */
export class InProcessTaskQueue implements TaskQueue {
  private readonly waiting: { taskId: string; job: () => Promise<void> }[] = [];
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly concurrency: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be a positive integer');
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  enqueue(taskId: string, job: () => Promise<void>): void {
    this.waiting.push({ taskId, job });
    this.pump();
  }

  remove(taskId: string): boolean {
    const index = this.waiting.findIndex((entry) => entry.taskId === taskId);
    if (index < 0) return false;
    this.waiting.splice(index, 1);
    this.settleIdle();
    return true;
  }

  idle(): Promise<void> {
    if (this.active === 0 && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.active < this.concurrency && this.waiting.length > 0) {
      const { job } = this.waiting.shift()!;
      this.active++;
      // A job reports its own failures; the catch only keeps a bug from becoming an unhandled rejection.
      void job().catch(() => {}).finally(() => {
        this.active--;
        this.pump();
        this.settleIdle();
      });
    }
  }

  private settleIdle(): void {
    if (this.active > 0 || this.waiting.length > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
