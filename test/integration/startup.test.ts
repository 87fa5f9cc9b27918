import { expect } from 'chai';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import { runAirlockCli, spawnAirlock } from '../support/process.js';
import type { AirlockProcess } from '../support/process.js';
import { removeDataDir } from '../support/removeDataDir.js';

const KEY = `airlock_${'ef'.repeat(32)}`;
/** A serve that cannot start exits by itself well within this (a code of null: it hung and was killed). */
const EXITS_WITHIN_MS = 20_000;

async function call(url: string, path: string, init: RequestInit & { json?: unknown } = {}, key = KEY) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${key}`);
  if (init.json !== undefined) headers.set('content-type', 'application/json');
  const res = await fetch(`${url}/api/v1${path}`, { ...init, headers, body: init.json !== undefined ? JSON.stringify(init.json) : init.body });
  return { status: res.status, body: (await res.json()) as any };
}

async function until<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A loopback port something else listens on. */
async function busyPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, server };
}

/** The status of a task, read from the database file itself, as no server shows it. */
async function storedStatus(dataDir: string, id: string): Promise<string | undefined> {
  const store = new SqliteStore(join(dataDir, 'airlock.db'));
  try {
    return (await store.getTask(id))?.status;
  } finally {
    await store.close();
  }
}

/** What a start that failed said: one line, no stack trace. */
function expectOneLine(stderr: string, text: string): void {
  expect(stderr).to.include(text);
  expect(stderr.trim().split('\n'), stderr).to.have.length(1);
  expect(stderr).not.to.match(/\n\s+at /);
}

describe('Starting airlock serve', function () {
  this.timeout(60_000);
  let dataDir: string;
  let running: AirlockProcess[] = [];
  let servers: Server[] = [];

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'airlock-start-'));
  });
  afterEach(async () => {
    for (const proc of running) proc.kill();
    await Promise.all(running.map((proc) => proc.exited));
    running = [];
    for (const server of servers) server.close();
    servers = [];
    await removeDataDir(dataDir);
  });

  async function start(env: Record<string, string> = {}): Promise<AirlockProcess> {
    const proc = await spawnAirlock({ AIRLOCK_DATA_DIR: dataDir, AIRLOCK_BOOTSTRAP_API_KEY: KEY, ...env });
    running.push(proc);
    return proc;
  }

  async function runningTask(proc: AirlockProcess): Promise<string> {
    const id = (await call(proc.url, '/tasks', { method: 'POST', json: { message: '/delay 60000\n/reply never' } })).body.data.id;
    await until(async () => ((await call(proc.url, `/tasks/${id}`)).body.data.status === 'running' ? true : undefined), 'running');
    return id;
  }

  it('refuses a second serve on the same data dir at once, naming the first one\'s PID, and leaves the first and its running task alone', async () => {
    const first = await start();
    const id = await runningTask(first);
    // Another port and the same port alike: the data dir is checked before anything else.
    for (const port of ['0', new URL(first.url).port]) {
      const second = await runAirlockCli(['serve'], { AIRLOCK_DATA_DIR: dataDir, AIRLOCK_BOOTSTRAP_API_KEY: KEY, PORT: port, HOST: '127.0.0.1' }, EXITS_WITHIN_MS);
      expect(second.code, second.stderr).to.equal(1);
      expectOneLine(second.stderr, `The data directory ${dataDir} is in use by another Airlock (PID ${first.child.pid})`);
      expect(second.stdout).not.to.include('Airlock is listening');
    }
    const task = (await call(first.url, `/tasks/${id}`)).body.data;
    expect(task.status).to.equal('running');
    expect(task.error).to.equal(null);
    expect(first.output()).not.to.include('marked failed');
  });

  it('exits 1 with one line when the port is in use, changing no task; the next start on a free port recovers them', async () => {
    const crashed = await start();
    const id = await runningTask(crashed);
    crashed.kill('SIGKILL');
    await crashed.exited;

    const { port, server } = await busyPort();
    servers.push(server);
    const refused = await runAirlockCli(['serve', '--port', String(port)], { AIRLOCK_DATA_DIR: dataDir, AIRLOCK_BOOTSTRAP_API_KEY: KEY, HOST: '127.0.0.1' }, EXITS_WITHIN_MS);
    expect(refused.code, refused.stderr).to.equal(1);
    expectOneLine(refused.stderr, `Cannot listen on 127.0.0.1:${port}: the address is already in use (EADDRINUSE)`);
    expect(refused.stdout).not.to.include('marked failed');
    expect(await storedStatus(dataDir, id)).to.equal('running');

    const next = await start();
    expect((await call(next.url, `/tasks/${id}`)).body.data.status).to.equal('failed');
  });

  it('exits 1 with one line when the host is not an address of this machine (EADDRNOTAVAIL)', async () => {
    // 192.0.2.1 is TEST-NET-1: never an address of this machine, and binding it sends nothing.
    const refused = await runAirlockCli(['serve', '--host', '192.0.2.1', '--port', '0'], { AIRLOCK_DATA_DIR: dataDir, AIRLOCK_BOOTSTRAP_API_KEY: KEY }, EXITS_WITHIN_MS);
    expect(refused.code, refused.stderr).to.equal(1);
    expectOneLine(refused.stderr, 'Cannot listen on 192.0.2.1:0: the address is not one of this machine\'s (EADDRNOTAVAIL)');
  });

  it('makes no key when the first start cannot listen; the next start prints one that works', async () => {
    const { port, server } = await busyPort();
    servers.push(server);
    const refused = await runAirlockCli(['serve'], { AIRLOCK_DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1' }, EXITS_WITHIN_MS);
    expect(refused.code, refused.stderr).to.equal(1);
    expect(refused.stdout).not.to.match(/airlock_[0-9a-f]{64}/);
    expect((await runAirlockCli(['keys', 'list'], { AIRLOCK_DATA_DIR: dataDir })).stdout).to.equal('No API keys.\n');

    const next = await spawnAirlock({ AIRLOCK_DATA_DIR: dataDir });
    running.push(next);
    const key = /airlock_[0-9a-f]{64}/.exec(next.output())?.[0];
    expect(key, next.output()).to.be.a('string');
    expect((await call(next.url, '/tasks', {}, key)).status).to.equal(200);
  });

  it('takes --port, --host and --data-dir over PORT, HOST and AIRLOCK_DATA_DIR', async () => {
    const { port, server } = await busyPort();
    server.close();
    const elsewhere = join(dataDir, 'not-this-one');
    const flagged = join(dataDir, 'this-one');
    const proc = await spawnAirlock({ AIRLOCK_DATA_DIR: elsewhere, PORT: '1', HOST: '192.0.2.1', AIRLOCK_BOOTSTRAP_API_KEY: KEY }, 15_000, ['--port', String(port), '--host', '127.0.0.1', '--data-dir', flagged]);
    running.push(proc);
    expect(proc.url).to.equal(`http://127.0.0.1:${port}`);
    expect(proc.output()).to.include(`"dataDir":"${flagged}"`);
    const id = (await call(proc.url, '/tasks', { method: 'POST', json: { message: '/reply here' } })).body.data.id;
    await until(async () => ((await call(proc.url, `/tasks/${id}`)).body.data.status === 'completed' ? true : undefined), 'completed');
    expect(await storedStatus(flagged, id)).to.equal('completed');
  });
});
