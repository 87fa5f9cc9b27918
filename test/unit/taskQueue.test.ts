import { expect } from 'chai';
import { InProcessTaskQueue } from '../../src/runtime/tasks/taskQueue.js';

/** A job the test finishes by hand, recording when it started. */
class Gate {
  started = false;
  private release!: () => void;
  private fail!: (err: Error) => void;
  private readonly startedPromise: Promise<void>;
  private markStarted!: () => void;

  constructor(private readonly log: string[], readonly name: string) {
    this.startedPromise = new Promise((resolve) => (this.markStarted = resolve));
  }

  readonly job = (): Promise<void> => {
    this.started = true;
    this.log.push(this.name);
    this.markStarted();
    return new Promise<void>((resolve, reject) => {
      this.release = resolve;
      this.fail = reject;
    });
  };

  /** Resolves when the job has started. */
  whenStarted(): Promise<void> {
    return this.startedPromise;
  }

  finish(): void {
    this.release();
  }

  reject(err: Error): void {
    this.fail(err);
  }
}

describe('InProcessTaskQueue', () => {
  describe('constructor', () => {
    it('rejects a concurrency of 0, a negative one and a fraction', () => {
      expect(() => new InProcessTaskQueue(0)).to.throw(RangeError);
      expect(() => new InProcessTaskQueue(-1)).to.throw(RangeError);
      expect(() => new InProcessTaskQueue(1.5)).to.throw(RangeError);
    });
  });

  describe('#enqueue()', () => {
    it('never runs more than `concurrency` jobs at once, and starts the next when one ends', async () => {
      const queue = new InProcessTaskQueue(2);
      const log: string[] = [];
      const gates = ['a', 'b', 'c', 'd'].map((name) => new Gate(log, name));
      let active = 0;
      let peak = 0;
      for (const gate of gates) {
        queue.enqueue(gate.name, async () => {
          active++;
          peak = Math.max(peak, active);
          try {
            await gate.job();
          } finally {
            active--;
          }
        });
      }
      expect(queue.running).to.equal(2);
      expect(queue.queued).to.equal(2);
      expect(log).to.deep.equal(['a', 'b']);

      gates[1]!.finish();
      await gates[2]!.whenStarted();
      expect(log).to.deep.equal(['a', 'b', 'c']);
      expect(queue.running).to.equal(2);

      for (const gate of gates) if (gate.started) gate.finish();
      await gates[3]!.whenStarted();
      gates[3]!.finish();
      await queue.idle();
      expect(peak).to.equal(2);
      expect(log).to.deep.equal(['a', 'b', 'c', 'd']);
    });

    it('starts jobs in the order they were queued', async () => {
      const queue = new InProcessTaskQueue(1);
      const order: string[] = [];
      for (const name of ['1', '2', '3', '4', '5']) queue.enqueue(name, async () => void order.push(name));
      await queue.idle();
      expect(order).to.deep.equal(['1', '2', '3', '4', '5']);
    });

    it('goes on with the next job after one rejects', async () => {
      const queue = new InProcessTaskQueue(1);
      const ran: string[] = [];
      queue.enqueue('bad', async () => {
        throw new Error('job failed');
      });
      queue.enqueue('good', async () => void ran.push('good'));
      await queue.idle();
      expect(ran).to.deep.equal(['good']);
      expect(queue.running).to.equal(0);
    });
  });

  describe('#remove()', () => {
    it('takes a queued job out so that it never runs, and returns true', async () => {
      const queue = new InProcessTaskQueue(1);
      const log: string[] = [];
      const first = new Gate(log, 'first');
      let removedRan = false;
      queue.enqueue('first', first.job);
      queue.enqueue('second', async () => void (removedRan = true));
      expect(queue.remove('second')).to.equal(true);
      expect(queue.queued).to.equal(0);
      first.finish();
      await queue.idle();
      expect(removedRan).to.equal(false);
    });

    it('returns false for a running job and for an unknown one', async () => {
      const queue = new InProcessTaskQueue(1);
      const gate = new Gate([], 'running');
      queue.enqueue('running', gate.job);
      expect(queue.remove('running')).to.equal(false);
      expect(queue.remove('nope')).to.equal(false);
      expect(queue.running).to.equal(1);
      gate.finish();
      await queue.idle();
    });

    it('lets idle() resolve when the running job ends after the queued one was removed', async () => {
      const queue = new InProcessTaskQueue(1);
      const gate = new Gate([], 'a');
      queue.enqueue('a', gate.job);
      queue.enqueue('b', async () => {});
      const idle = queue.idle();
      expect(queue.remove('b')).to.equal(true);
      gate.finish();
      await idle;
      expect(queue.running + queue.queued).to.equal(0);
    });
  });

  describe('a long backlog', () => {
    it('keeps queue order across thousands of jobs with removals anywhere, and refuses a task queued twice', async () => {
      const queue = new InProcessTaskQueue(1);
      const started: number[] = [];
      let release: (() => void) | undefined;
      const job = (n: number) => () => {
        started.push(n);
        return new Promise<void>((resolve) => (release = resolve));
      };
      for (let n = 0; n < 5000; n++) queue.enqueue(`t${n}`, job(n));
      expect(() => queue.enqueue('t4999', job(-1))).to.throw(/already queued/);
      // Every third job leaves the queue (t0 runs already and cannot be removed).
      for (let n = 0; n < 5000; n += 3) expect(queue.remove(`t${n}`)).to.equal(n !== 0);
      expect(queue.remove('t3')).to.equal(false);
      const expected = Array.from({ length: 5000 }, (_, n) => n).filter((n) => n === 0 || n % 3 !== 0);
      expect(queue.queued).to.equal(expected.length - 1);
      while (started.length < expected.length) {
        const before = started.length;
        release!();
        await new Promise((resolve) => setImmediate(resolve));
        expect(started.length).to.equal(before + 1);
      }
      expect(started).to.deep.equal(expected);
      release!();
      await queue.idle();
      // A removed task can be queued again, and runs.
      queue.enqueue('t3', job(3));
      expect(started.at(-1)).to.equal(3);
      release!();
      await queue.idle();
    });
  });

  describe('#idle()', () => {
    it('resolves at once when the queue is empty', async () => {
      await new InProcessTaskQueue(1).idle();
    });

    it('resolves only after every queued and running job has finished', async () => {
      const queue = new InProcessTaskQueue(1);
      const log: string[] = [];
      const a = new Gate(log, 'a');
      const b = new Gate(log, 'b');
      queue.enqueue('a', a.job);
      queue.enqueue('b', b.job);
      let idle = false;
      const whenIdle = queue.idle().then(() => void (idle = true));
      a.finish();
      await b.whenStarted();
      expect(idle).to.equal(false);
      b.reject(new Error('b failed'));
      await whenIdle;
      expect(idle).to.equal(true);
      expect(queue.running + queue.queued).to.equal(0);
    });
  });
});
