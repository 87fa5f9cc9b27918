import { copyFile, mkdtemp, realpath, rename, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { expect } from 'chai';
import pino from 'pino';
import { loadConfig } from '../../src/config.js';
import { Readiness } from '../../src/runtime/tasks/readiness.js';
import { startSandbox } from '../../src/sandbox/sandboxMode.js';
import { ThreadedStore } from '../../src/store/storeThread.js';
import { startTestAirlock } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';

/** A probe path outside /api/v1, without a key. */
async function probe(airlock: TestAirlock, path: string, method = 'GET'): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${airlock.url}${path}`, { method });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

/** Ends the store's worker thread the way a crash would: reached through a private field, as no user can. */
async function killStoreThread(airlock: TestAirlock): Promise<void> {
  await (airlock.store as unknown as { worker: Worker }).worker.terminate();
}

describe('Readiness and liveness', () => {
  describe('GET /readyz in a running Airlock', () => {
    let airlock: TestAirlock;

    beforeEach(async () => {
      airlock = await startTestAirlock();
    });
    afterEach(async () => {
      await airlock.stop();
    });

    it('is ready after a round trip to the store and with the bubblewrap probe passing', async () => {
      const res = await probe(airlock, '/readyz');
      expect(res.status).to.equal(200);
      expect(res.headers.get('cache-control')).to.equal('no-store');
      expect(res.body.success).to.equal(true);
      expect(res.body.data.status).to.equal('ready');
      expect(res.body.data.checks.store).to.include({ ok: true });
      expect(res.body.data.checks.store.ms).to.be.a('number');
      expect(res.body.data.checks.sandbox).to.include({ ok: true, mode: 'bwrap' });
      expect(Date.parse(res.body.data.checks.sandbox.probedAt)).to.be.closeTo(Date.now(), 10_000);
      expect((await probe(airlock, '/readyz/', 'HEAD')).status).to.equal(200);
    });

    it('fails with NOT_READY (503) naming the store when the store thread has died, while liveness stays ok', async () => {
      await killStoreThread(airlock);
      // A task route needs the store (authentication reads the key): it fails now.
      expect((await airlock.api('/tasks')).status).to.be.at.least(500);

      for (let n = 0; n < 2; n++) {
        const res = await probe(airlock, '/readyz');
        expect(res.status).to.equal(503);
        expect(res.body.success).to.equal(false);
        expect(res.body.error.code).to.equal('NOT_READY');
        expect(res.body.error.message).to.match(/^Airlock is not ready \(store: the store thread exited\)$/);
        expect(res.body.error.details.failed).to.deep.equal(['store']);
        expect(res.body.error.details.checks.store).to.include({ ok: false, error: 'the store thread exited' });
        expect(res.body.error.details.checks.sandbox).to.include({ ok: true, mode: 'bwrap' });
      }
      expect((await probe(airlock, '/readyz', 'HEAD')).status).to.equal(503);

      // Liveness reads only memory: the process is alive and says so.
      const live = await probe(airlock, '/healthz');
      expect(live.status).to.equal(200);
      expect(live.body.data).to.include({ status: 'ok', runningTasks: 0, queuedTasks: 0 });

      // The flip is logged once, however often readiness is asked.
      const flips = airlock.logs.filter((line) => line.includes('not ready: the store check fails'));
      expect(flips).to.have.length(1);
      expect(JSON.parse(flips[0]!)).to.include({ level: 40, check: 'store', error: 'the store thread exited' });
    });
  });

  describe('Readiness with the real sandbox probe', function () {
    let dir: string;
    let store: ThreadedStore;

    beforeEach(async () => {
      dir = await realpath(await mkdtemp(join(tmpdir(), 'airlock-ready-')));
      store = await ThreadedStore.open(join(dir, 'airlock.db'));
    });
    afterEach(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('fails the sandbox check once bubblewrap stops working after start-up, and passes again once it works', async () => {
      // A bubblewrap of this test's own, which the test can break and mend.
      const bwrap = join(dir, 'bwrap');
      const realBwrap = execFileSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' }).trim();
      await copyFile(realBwrap, bwrap);
      const configPath = join(dir, 'airlock.config.json');
      await writeFile(configPath, JSON.stringify({ sandbox: { bwrapPath: bwrap } }));
      const config = loadConfig({ AIRLOCK_DATA_DIR: join(dir, 'data'), AIRLOCK_CONFIG: configPath, AIRLOCK_SANDBOX_MODE: 'bwrap' });
      const lines: string[] = [];
      const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
      const setup = await startSandbox(config.sandbox, { dataDir: config.dataDir, logger, networks: new Set(['allow'] as const) });
      const readiness = new Readiness({ store, sandbox: setup, logger, sandboxRecheckMs: 0 });

      expect((await readiness.check()).ready).to.equal(true);

      const broken = join(dir, 'bwrap.broken');
      await writeFile(broken, '#!/bin/sh\necho "bwrap: broken on purpose" >&2\nexit 1\n', { mode: 0o755 });
      await rename(broken, bwrap);
      const report = await readiness.check();
      expect(report.ready).to.equal(false);
      expect(report.checks.store.ok).to.equal(true);
      expect(report.checks.sandbox).to.include({ ok: false, mode: 'bwrap', error: 'bwrap: broken on purpose' });
      expect(lines.some((line) => line.includes('not ready: the sandbox check fails'))).to.equal(true);

      await copyFile(realBwrap, join(dir, 'bwrap.mended'));
      await rename(join(dir, 'bwrap.mended'), bwrap);
      expect((await readiness.check()).ready).to.equal(true);
      expect(lines.some((line) => line.includes('the sandbox check passes again'))).to.equal(true);
    });
  });
});
