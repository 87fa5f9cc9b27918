import { expect } from 'chai';
import { CallDeadline } from '../../src/mcp/callDeadline.js';
import type { DeadlineClock } from '../../src/mcp/callDeadline.js';

/** A clock the test moves by hand; timers fire when `advance` passes them. */
class FakeClock implements DeadlineClock {
  private at = 0;
  private timers = new Map<number, { due: number; callback: () => void }>();
  private nextId = 1;

  now(): number {
    return this.at;
  }

  setTimer(callback: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { due: this.at + ms, callback });
    return id;
  }

  clearTimer(timer: unknown): void {
    this.timers.delete(timer as number);
  }

  get pending(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const until = this.at + ms;
    for (;;) {
      const next = [...this.timers.entries()].filter(([, t]) => t.due <= until).sort(([, a], [, b]) => a.due - b.due)[0];
      if (!next) break;
      this.timers.delete(next[0]);
      this.at = next[1].due;
      next[1].callback();
    }
    this.at = until;
  }
}

describe('CallDeadline', () => {
  let clock: FakeClock;
  let expired: number;
  const start = (timeoutMs: number) => new CallDeadline(timeoutMs, () => expired++, clock);

  beforeEach(() => {
    clock = new FakeClock();
    expired = 0;
  });

  it('expires once when its time has run out', () => {
    start(1_000);
    clock.advance(999);
    expect(expired).to.equal(0);
    clock.advance(1);
    expect(expired).to.equal(1);
    clock.advance(5_000);
    expect(expired).to.equal(1);
  });

  it('does not count paused time, and goes on with what was left', () => {
    const deadline = start(1_000);
    clock.advance(600);
    const resume = deadline.pause();
    clock.advance(10_000);
    expect(expired).to.equal(0);
    resume();
    clock.advance(399);
    expect(expired).to.equal(0);
    clock.advance(1);
    expect(expired).to.equal(1);
  });

  it('stays paused until the last of overlapping pauses ends; a resume counts once', () => {
    const deadline = start(1_000);
    const first = deadline.pause();
    const second = deadline.pause();
    first();
    first();
    clock.advance(5_000);
    expect(expired).to.equal(0);
    second();
    clock.advance(1_000);
    expect(expired).to.equal(1);
  });

  it('never fires after stop, and a resume after stop does not restart it', () => {
    const deadline = start(1_000);
    const resume = deadline.pause();
    deadline.stop();
    resume();
    clock.advance(10_000);
    expect(expired).to.equal(0);
    expect(clock.pending).to.equal(0);
  });
});
