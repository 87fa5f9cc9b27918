import type { ToolProgress } from './toolRouter.js';

/**
 * The least time between two `tool_progress` events of one call. A server may send progress as
 * often as it likes; a call stores and streams at most one event per interval (4 a second) plus
 * the last one, so a flood of 100,000 notifications costs a few events, not 100,000 store writes.
 */
export const PROGRESS_INTERVAL_MS = 250;

/**
 * Turns one call's progress notifications into events: the first at once, then at most one per
 * interval, always the latest (a newer notification replaces one that waits). `flush` sends the
 * one still waiting, so the last progress a server reported is always stored before the result.
 * Taking a notification is a comparison and an assignment: no timer per notification.
 */
export class ProgressCoalescer {
  private lastSentAt = -Infinity;
  private waiting: ToolProgress | undefined;
  private timer: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(
    private readonly send: (progress: ToolProgress) => void,
    private readonly intervalMs = PROGRESS_INTERVAL_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  offer(progress: ToolProgress): void {
    if (this.finished) return;
    if (this.timer) {
      this.waiting = progress;
      return;
    }
    const due = this.lastSentAt + this.intervalMs - this.now();
    if (due <= 0) {
      this.emit(progress);
      return;
    }
    this.waiting = progress;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, due);
    this.timer.unref();
  }

  /** Sends the progress still waiting, if any; later offers start a new interval. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) this.emit(waiting);
  }

  /** Sends what is waiting and takes no more: nothing follows the call's result. */
  finish(): void {
    this.flush();
    this.finished = true;
  }

  private emit(progress: ToolProgress): void {
    this.lastSentAt = this.now();
    this.send(progress);
  }
}
