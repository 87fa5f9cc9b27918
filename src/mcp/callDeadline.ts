/** The clock a deadline runs on; tests give a fake one. */
export interface DeadlineClock {
  now(): number;
  setTimer(callback: () => void, ms: number): unknown;
  clearTimer(timer: unknown): void;
}

const systemClock: DeadlineClock = {
  now: () => Date.now(),
  setTimer: (callback, ms) => {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return timer;
  },
  clearTimer: (timer) => clearTimeout(timer as NodeJS.Timeout),
};

/**
 * A tool call's time limit that does not count the time its server spends waiting on the client:
 * while a person answers an elicitation or the model answers a sampling request, the clock is
 * paused (several pauses may overlap; it runs again when the last one ends). `onExpire` is called
 * at most once, and never after `stop()`.
 */
export class CallDeadline {
  private remainingMs: number;
  private runningSince: number | null = null;
  private timer: unknown = null;
  private pauses = 0;
  private done = false;

  constructor(timeoutMs: number, private readonly onExpire: () => void, private readonly clock: DeadlineClock = systemClock) {
    this.remainingMs = timeoutMs;
    this.run();
  }

  /** Stops the clock until the returned function is called (once; later calls do nothing). */
  pause(): () => void {
    if (this.done) return () => {};
    if (this.pauses++ === 0) this.halt();
    let resumed = false;
    return () => {
      if (resumed) return;
      resumed = true;
      if (--this.pauses === 0 && !this.done) this.run();
    };
  }

  /** The call ended: the deadline never fires. */
  stop(): void {
    this.done = true;
    this.halt();
  }

  private run(): void {
    this.runningSince = this.clock.now();
    this.timer = this.clock.setTimer(() => {
      this.timer = null;
      if (this.done) return;
      this.done = true;
      this.onExpire();
    }, this.remainingMs);
  }

  private halt(): void {
    if (this.timer !== null) this.clock.clearTimer(this.timer);
    this.timer = null;
    if (this.runningSince !== null) this.remainingMs = Math.max(0, this.remainingMs - (this.clock.now() - this.runningSince));
    this.runningSince = null;
  }
}
