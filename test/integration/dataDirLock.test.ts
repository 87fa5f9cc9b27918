import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DataDirInUseError, DataDirLock, PID_FILE } from '../../src/store/dataDirLock.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import { StartupError } from '../../src/startupError.js';
import { rejection, startTestAirlock } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { removeDataDir } from '../support/removeDataDir.js';

const LOCK_MODULE = pathToFileURL(join(import.meta.dirname, '../../src/store/dataDirLock.ts')).href;

describe('DataDirLock', function () {
  this.timeout(30_000);
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'airlock-lock-'));
  });
  afterEach(async () => {
    await removeDataDir(dataDir);
  });

  it('is held once: a second acquire fails naming the holder\'s PID, and works again after release', () => {
    const lock = DataDirLock.acquire(dataDir);
    expect(readFileSync(join(dataDir, PID_FILE), 'utf8')).to.equal(`${process.pid}\n`);
    const error = (() => {
      try {
        DataDirLock.acquire(dataDir);
      } catch (err) {
        return err;
      }
      throw new Error('the second acquire succeeded');
    })();
    expect(error).to.be.instanceOf(DataDirInUseError).and.instanceOf(StartupError);
    expect((error as DataDirInUseError).pid).to.equal(process.pid);
    expect((error as Error).message).to.include(`${dataDir} is in use by another Airlock (PID ${process.pid})`);
    lock.release();
    expect(existsSync(join(dataDir, PID_FILE))).to.equal(false);
    DataDirLock.acquire(dataDir).release();
  });

  it('is held by another process until it dies, however it dies: no stale lock outlives a SIGKILL', async () => {
    const script = `const { DataDirLock } = await import(${JSON.stringify(LOCK_MODULE)}); DataDirLock.acquire(${JSON.stringify(dataDir)}); console.log('locked'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk) => String(chunk).includes('locked') && resolve());
        child.once('exit', (code) => reject(new Error(`the holder exited with ${code}`)));
      });
      const error = (() => {
        try {
          DataDirLock.acquire(dataDir);
        } catch (err) {
          return err;
        }
        throw new Error('acquired a lock another process holds');
      })();
      expect((error as DataDirInUseError).pid).to.equal(child.pid);
    } finally {
      process.kill(child.pid!, 'SIGKILL');
      await exited;
    }
    // Its PID file is left behind, naming a dead process; the lock is free all the same.
    expect(readFileSync(join(dataDir, PID_FILE), 'utf8')).to.equal(`${child.pid}\n`);
    const lock = DataDirLock.acquire(dataDir);
    expect(readFileSync(join(dataDir, PID_FILE), 'utf8')).to.equal(`${process.pid}\n`);
    lock.release();
  });

  describe('in startAirlock', () => {
    let first: TestAirlock | undefined;
    afterEach(async () => {
      await first?.stop();
      first = undefined;
    });

    it('refuses a second Airlock on the same data dir, and the first goes on serving', async () => {
      first = await startTestAirlock({ dataDir });
      const error = await rejection(startTestAirlock({ dataDir }));
      expect(error).to.be.instanceOf(DataDirInUseError);
      expect((error as DataDirInUseError).pid).to.equal(process.pid);
      expect((await first.api('/tasks')).status).to.equal(200);
      await first.stop();
      first = undefined;
      // Stopped, it has given the lock up.
      first = await startTestAirlock({ dataDir });
    });

    it('gives the lock up when it cannot listen, having registered no key', async () => {
      const busy = createServer();
      await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
      try {
        const port = String((busy.address() as { port: number }).port);
        const error = await rejection(startTestAirlock({ dataDir, env: { PORT: port } }));
        expect(error).to.be.instanceOf(StartupError);
        expect((error as Error).message).to.include(`Cannot listen on 127.0.0.1:${port}: the address is already in use (EADDRINUSE)`);
      } finally {
        busy.close();
      }
      const store = new SqliteStore(join(dataDir, 'airlock.db'));
      expect(await store.countApiKeys()).to.equal(0);
      await store.close();
      first = await startTestAirlock({ dataDir });
      expect((await first.api('/tasks')).status).to.equal(200);
    });
  });
});
