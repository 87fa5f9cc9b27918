import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { WorkspaceRetention } from '../../src/runtime/tasks/workspaceRetention.js';
import { Workspaces } from '../../src/sandbox/workspaces.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import type { TaskRecord, TaskStatus } from '../../src/store/store.js';

const HOUR = 3_600_000;
const NOW = Date.parse('2026-11-28T12:00:00.000Z');

describe('WorkspaceRetention', () => {
  let dir: string;
  let store: SqliteStore;
  let workspaces: Workspaces;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-retention-'));
    store = new SqliteStore(':memory:');
    await store.ensureProject('default');
    workspaces = new Workspaces(join(dir, 'workspaces'));
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A task in `status` that finished `hoursAgo` (null: not finished), with a workspace. */
  async function task(status: TaskStatus, hoursAgo: number | null): Promise<string> {
    const id = randomUUID();
    const stamp = new Date(NOW - 48 * HOUR).toISOString();
    const record: TaskRecord = {
      id, projectId: 'default', apiKeyId: 'key-1', endUserId: null, username: null, sessionId: randomUUID(), conversationId: randomUUID(),
      status, message: 'hello', systemPrompt: null, showInHistory: true, autoExecute: true, env: null, error: null,
      usage: { inputTokens: 0, outputTokens: 0, turns: 0 }, createdAt: stamp, startedAt: stamp,
      completedAt: hoursAgo === null ? null : new Date(NOW - hoursAgo * HOUR).toISOString(),
      lastActivityAt: stamp, messageCount: 0, runStartSeq: 0, secretKeys: [],
    };
    await store.createTask(record);
    await workspaces.ensure(id);
    return id;
  }

  function retention(retentionMs: number): WorkspaceRetention {
    return new WorkspaceRetention({ store, workspaces, retentionMs, sweepIntervalMs: 60_000, logger: pino({ level: 'silent' }), now: () => NOW });
  }

  it('deletes the workspaces of tasks finished longer ago than the retention, and only those', async () => {
    const oldDone = await task('completed', 25);
    const oldFailed = await task('failed', 30);
    const oldCancelled = await task('cancelled', 24.01);
    const recent = await task('completed', 23);
    const running = await task('running', null);
    const waiting = await task('awaiting_approval', null);
    const pending = await task('pending', null);
    // A workspace whose task is not in the store is not the sweep's to judge.
    const orphan = randomUUID();
    await workspaces.ensure(orphan);

    expect(await retention(24 * HOUR).sweep()).to.equal(3);
    expect((await readdir(workspaces.root)).sort()).to.deep.equal([recent, running, waiting, pending, orphan].sort());
    expect(await workspaces.taskIds()).to.not.include.members([oldDone, oldFailed, oldCancelled]);
    expect(await store.getTask(oldDone), 'the task itself stays').to.include({ status: 'completed' });
  });

  it('does nothing when no workspace exists yet', async () => {
    expect(await retention(1).sweep()).to.equal(0);
  });

  it('shares one pass between concurrent sweeps, and stop() waits for it', async () => {
    await task('completed', 2);
    const sweeper = retention(HOUR);
    const [a, b] = [sweeper.sweep(), sweeper.sweep()];
    expect(a).to.equal(b);
    await sweeper.stop();
    expect(await a).to.equal(1);
  });
});
