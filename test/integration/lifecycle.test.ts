import { expect } from 'chai';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../support/harness.js';
import { runAirlockCli, spawnAirlock } from '../support/process.js';
import type { AirlockProcess } from '../support/process.js';
import { removeDataDir } from '../support/removeDataDir.js';
import { openSse } from '../support/sse.js';

const KEY = `airlock_${'cd'.repeat(32)}`;

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

describe('The airlock process', function () {
  this.timeout(60_000);
  let dataDir: string;
  let running: AirlockProcess[] = [];

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'airlock-proc-'));
  });
  afterEach(async () => {
    for (const proc of running) proc.kill();
    await Promise.all(running.map((proc) => proc.exited));
    running = [];
    await removeDataDir(dataDir);
  });

  async function start(env: Record<string, string> = {}): Promise<AirlockProcess> {
    const proc = await spawnAirlock({ AIRLOCK_DATA_DIR: dataDir, AIRLOCK_BOOTSTRAP_API_KEY: KEY, ...env });
    running.push(proc);
    return proc;
  }

  it('creates and prints one API key on first start with an empty store, and none after', async () => {
    const first = await spawnAirlock({ AIRLOCK_DATA_DIR: dataDir });
    running.push(first);
    const key = /airlock_[0-9a-f]{64}/.exec(first.output())?.[0];
    expect(key, first.output()).to.be.a('string');
    await until(async () => (first.output().includes('scripted model') ? true : undefined), 'the scripted-model notice');
    const res = await call(first.url, '/tasks', {}, key);
    expect(res.status).to.equal(200);
    first.kill('SIGTERM');
    await first.exited;
    const second = await spawnAirlock({ AIRLOCK_DATA_DIR: dataDir });
    running.push(second);
    expect(second.output()).not.to.match(/airlock_[0-9a-f]{64}/);
    // The printed key never went through the JSON log.
    expect(first.output().split('\n').filter((line) => line.startsWith('{')).join('\n')).not.to.include(key!);
  });

  it('marks tasks that were running when the process died as failed on the next start', async () => {
    const proc = await start();
    const created = await call(proc.url, '/tasks', { method: 'POST', json: { message: '/delay 60000\n/reply never' } });
    const id = created.body.data.id;
    await until(async () => ((await call(proc.url, `/tasks/${id}`)).body.data.status === 'running' ? true : undefined), 'running');
    proc.kill('SIGKILL');
    await proc.exited;

    const next = await start();
    const task = (await call(next.url, `/tasks/${id}`)).body.data;
    expect(task.status).to.equal('failed');
    expect(task.errorCode).to.equal('EXECUTION_ERROR');
    expect(task.error).to.match(/restarted while this task was running/);
    expect(next.output()).to.include('marked failed');
    // The task can go on with a follow-up.
    await call(next.url, `/tasks/${id}/messages`, { method: 'POST', json: { message: '/reply back again' } });
    const resumed = await until(async () => {
      const t = (await call(next.url, `/tasks/${id}`)).body.data;
      return t.status === 'completed' ? t : undefined;
    }, 'completed');
    expect(resumed.output.content).to.equal('back again');
  });

  it('keeps a task that waited for approval when the process died waiting; approved on the next start, its call runs once', async () => {
    const proc = await start();
    const message = '/call write_file {"path":"approved.txt","content":"ran after the crash"}\n/reply written';
    const id = (await call(proc.url, '/tasks', { method: 'POST', json: { message, autoExecute: false } })).body.data.id;
    await until(async () => ((await call(proc.url, `/tasks/${id}`)).body.data.status === 'awaiting_approval' ? true : undefined), 'awaiting_approval');
    proc.kill('SIGKILL');
    await proc.exited;

    const next = await start();
    const waiting = (await call(next.url, `/tasks/${id}`)).body.data;
    expect(waiting.status).to.equal('awaiting_approval');
    expect(waiting.pendingApprovals.map((p: { toolName: string }) => p.toolName)).to.deep.equal(['write_file']);
    expect(next.output()).to.include('still wait');
    const approved = await call(next.url, `/tasks/${id}/tools/toolu_scripted_1/approve`, { method: 'POST', json: { outcome: 'proceed_once' } });
    expect(approved.body.data).to.deep.equal({ approved: true });
    const done = await until(async () => {
      const t = (await call(next.url, `/tasks/${id}`)).body.data;
      return ['completed', 'failed'].includes(t.status) ? t : undefined;
    }, 'the resumed task to finish');
    expect(done.status, JSON.stringify(done.error)).to.equal('completed');
    expect(done.output.content).to.equal('written');
    expect(await readFile(join(dataDir, 'workspaces', id, 'approved.txt'), 'utf8')).to.equal('ran after the crash');
  });

  it('on SIGTERM stops accepting, cancels running work cleanly, ends streams, persists, and exits 0', async () => {
    const configPath = join(dataDir, 'airlock.config.json');
    await writeFile(configPath, JSON.stringify({ server: { shutdownGraceMs: 300 } }));
    const proc = await start({ AIRLOCK_CONFIG: configPath });
    const created = await call(proc.url, '/tasks', { method: 'POST', json: { message: '/delay 60000\n/reply never' } });
    const id = created.body.data.id;
    const stream = await openSse(`${proc.url}/api/v1/tasks/${id}/stream`, { authorization: `Bearer ${KEY}` });
    await stream.waitFor((f) => f.event === 'history_done');
    proc.kill('SIGTERM');
    expect(await proc.exited).to.equal(0);
    await stream.ended;
    expect(stream.frames.at(-1)).to.deep.include({ event: 'error' });
    expect(stream.frames.at(-1)!.data.message).to.match(/shut down/);

    const next = await start();
    const task = (await call(next.url, `/tasks/${id}`)).body.data;
    expect(task.status).to.equal('failed');
    expect(task.error).to.match(/shut down while this task was running/);
  });

  it('fails to start listing every configuration problem', async () => {
    const configPath = join(dataDir, 'bad.json');
    await writeFile(configPath, JSON.stringify({ server: { port: 'eighty' }, tasks: { concurrency: 0 }, nope: true }));
    const result = await runAirlockCli(['serve'], { AIRLOCK_DATA_DIR: dataDir, AIRLOCK_CONFIG: configPath, PORT: 'abc', AIRLOCK_BOOTSTRAP_API_KEY: 'short' });
    expect(result.code).to.equal(78);
    for (const text of ['/server/port', '/tasks/concurrency', 'unknown property "nope"', 'PORT must be an integer', 'AIRLOCK_BOOTSTRAP_API_KEY must be']) expect(result.stderr).to.include(text);
  });

  it('manages keys from the CLI: create with expiry, list, revoke', async () => {
    const env = { AIRLOCK_DATA_DIR: dataDir };
    const created = await runAirlockCli(['keys', 'create', '--project', 'default', '--name', 'ci', '--expires-in', '30d'], env);
    expect(created.code, created.stderr).to.equal(0);
    const key = /airlock_[0-9a-f]{64}/.exec(created.stdout)![0];
    const id = /Created key (key_\w+)/.exec(created.stdout)![1]!;
    const listed = await runAirlockCli(['keys', 'list'], env);
    expect(listed.stdout).to.include(id).and.include('ci').and.include('active, expires');
    expect(listed.stdout).not.to.include(key);

    const proc = await start();
    expect((await call(proc.url, '/tasks', {}, key)).status).to.equal(200);
    const revoked = await runAirlockCli(['keys', 'revoke', id], env);
    expect(revoked.code).to.equal(0);
    // The server trusts a key it has verified for up to API_KEY_CACHE_TTL_MS (1 s), then looks again.
    const after = await waitFor(async () => {
      const res = await call(proc.url, '/tasks', {}, key);
      return res.status === 401 && res;
    }, 'the revoked key to be refused');
    expect(after.body.error.code).to.equal('INVALID_API_KEY');
    expect((await runAirlockCli(['keys', 'list'], env)).stdout).to.include('revoked');

    const unknownProject = await runAirlockCli(['keys', 'create', '--project', 'nope'], env);
    expect(unknownProject.code).to.equal(2);
    expect(unknownProject.stderr).to.include('No project "nope"');
    expect((await runAirlockCli(['keys', 'revoke', 'key_missing'], env)).code).to.equal(2);
  });
});
