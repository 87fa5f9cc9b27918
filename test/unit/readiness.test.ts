import { expect } from 'chai';
import pino from 'pino';
import { Readiness } from '../../src/runtime/tasks/readiness.js';

const logger = pino({ level: 'silent' });
const answering = { ping: async () => {} };

/** A sandbox probe that counts its runs and ends when the test says. */
function controlledProbe() {
  const runs: Array<(error?: string) => void> = [];
  return {
    runs,
    probe: () => new Promise<string | undefined>((resolve) => runs.push(resolve)),
  };
}

describe('Readiness', () => {
  describe('#check()', () => {
    it('fails the store check when the store does not answer within the timeout', async () => {
      const readiness = new Readiness({ store: { ping: () => new Promise<void>(() => {}) }, sandbox: { mode: 'none' }, logger, timeoutMs: 30 });
      const report = await readiness.check();
      expect(report.ready).to.equal(false);
      expect(report.checks.store).to.include({ ok: false, error: 'the store did not answer within 30 ms' });
      expect(report.checks.sandbox).to.deep.equal({ ok: true, mode: 'none' });
    });

    it('reports the store\'s own error', async () => {
      const readiness = new Readiness({ store: { ping: async () => { throw new Error('disk I/O error'); } }, sandbox: { mode: 'none' }, logger });
      expect((await readiness.check()).checks.store).to.include({ ok: false, error: 'disk I/O error' });
    });

    it('runs one sandbox probe for checks that come while it runs, and reuses its result until the recheck interval', async () => {
      const { runs, probe } = controlledProbe();
      const readiness = new Readiness({ store: answering, sandbox: { mode: 'bwrap', probe }, logger, sandboxRecheckMs: 60_000 });
      const first = readiness.check();
      const second = readiness.check();
      await new Promise((resolve) => setImmediate(resolve));
      expect(runs).to.have.length(1);
      runs[0]!();
      const reports = await Promise.all([first, second, readiness.check()]);
      expect(reports.map((r) => r.ready)).to.deep.equal([true, true, true]);
      expect(runs).to.have.length(1);
    });

    it('probes again once the interval has passed, and says why the probe failed', async () => {
      const { runs, probe } = controlledProbe();
      const readiness = new Readiness({ store: answering, sandbox: { mode: 'bwrap', probe }, logger, sandboxRecheckMs: 0 });
      const first = readiness.check();
      await new Promise((resolve) => setImmediate(resolve));
      runs[0]!();
      expect((await first).ready).to.equal(true);
      const second = readiness.check();
      await new Promise((resolve) => setImmediate(resolve));
      expect(runs).to.have.length(2);
      runs[1]!('exit status 1');
      expect((await second).checks.sandbox).to.include({ ok: false, mode: 'bwrap', error: 'exit status 1' });
    });

    it('fails the sandbox check when the probe takes longer than the timeout, without starting another', async () => {
      const { runs, probe } = controlledProbe();
      const readiness = new Readiness({ store: answering, sandbox: { mode: 'bwrap', probe }, logger, timeoutMs: 30, sandboxRecheckMs: 0 });
      expect((await readiness.check()).checks.sandbox).to.deep.equal({ ok: false, mode: 'bwrap', error: 'the sandbox probe did not answer within 30 ms' });
      const again = readiness.check();
      await new Promise((resolve) => setImmediate(resolve));
      expect(runs).to.have.length(1);
      runs[0]!();
      expect((await again).ready).to.equal(true);
    });

    it('turns a probe that throws into a failed check', async () => {
      const readiness = new Readiness({ store: answering, sandbox: { mode: 'bwrap', probe: async () => { throw new Error('ENOSPC: no space left on device'); } }, logger });
      expect((await readiness.check()).checks.sandbox).to.include({ ok: false, error: 'ENOSPC: no space left on device' });
    });
  });
});
