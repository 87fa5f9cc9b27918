import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config.js';
import { startAirlock } from '../../src/main.js';
import type { Airlock, AirlockOverrides } from '../../src/main.js';

export const TEST_KEY = `airlock_${'ab'.repeat(32)}`;

/** An Airlock on port 0 with its own data dir, and the log lines it wrote. */
export interface TestAirlock extends Airlock {
  key: string;
  dataDir: string;
  logs: string[];
  api: (path: string, init?: RequestInit & { json?: unknown; key?: string | null }) => Promise<{ status: number; body: any; headers: Headers; text: string }>;
  stop(): Promise<void>;
}

/**
 * Starts an Airlock for a test. `config` is written as the config file (into the data dir) and
 * named by AIRLOCK_CONFIG.
 */
export async function startTestAirlock(options: { env?: Record<string, string>; overrides?: AirlockOverrides; dataDir?: string; config?: Record<string, unknown> } = {}): Promise<TestAirlock> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'airlock-test-')));
  const configEnv: Record<string, string> = {};
  if (options.config) {
    configEnv.AIRLOCK_CONFIG = join(dataDir, 'airlock.config.json');
    await writeFile(configEnv.AIRLOCK_CONFIG, JSON.stringify(options.config));
  }
  const logs: string[] = [];
  const logDestination = new Writable({
    write(chunk, _encoding, callback) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      callback();
    },
  });
  // Sandboxed unless a test says otherwise; without a working bubblewrap, start-up fails saying so.
  const config = loadConfig({ AIRLOCK_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', AIRLOCK_BOOTSTRAP_API_KEY: TEST_KEY, AIRLOCK_LOG_LEVEL: 'debug', AIRLOCK_SANDBOX_MODE: 'bwrap', ...configEnv, ...options.env });
  const airlock = await startAirlock(config, { logDestination, announce: () => {}, ...options.overrides });
  const api: TestAirlock['api'] = async (path, init = {}) => {
    const headers = new Headers(init.headers);
    const key = init.key === undefined ? TEST_KEY : init.key;
    if (key !== null && !headers.has('authorization') && !headers.has('x-api-key')) headers.set('authorization', `Bearer ${key}`);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set('content-type', 'application/json');
      body = JSON.stringify(init.json);
    }
    const res = await fetch(`${airlock.url}${path.startsWith('/healthz') ? '' : '/api/v1'}${path}`, { ...init, headers, body });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, headers: res.headers, text };
  };
  return {
    ...airlock,
    key: TEST_KEY,
    dataDir,
    logs,
    api,
    async stop() {
      await airlock.close();
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls until `check` returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(check: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits until the task reaches one of `statuses`, returning the task. */
export async function waitForStatus(airlock: TestAirlock, id: string, statuses: string[], timeoutMs = 5_000): Promise<any> {
  return waitFor(async () => {
    const { body } = await airlock.api(`/tasks/${id}`);
    return statuses.includes(body?.data?.status) ? body.data : undefined;
  }, `task ${id} to be ${statuses.join(' or ')}`, timeoutMs);
}

/** The error a promise rejects with; fails when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

/** Whether a process with this PID exists (zombies count as alive until reaped). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
