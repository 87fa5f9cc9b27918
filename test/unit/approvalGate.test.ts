import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { ApprovalGate } from '../../src/runtime/approvals/approvalGate.js';
import { Scrubber } from '../../src/runtime/security/scrubber.js';
import type { TaskRecord } from '../../src/store/store.js';
import { ThreadedStore } from '../../src/store/storeThread.js';

// The gate over the real store (its worker thread and a SQLite file), as main.ts builds it.
describe('ApprovalGate with the real store', () => {
  let dir: string;
  let store: ThreadedStore;
  let taskId: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-gate-'));
    store = await ThreadedStore.open(join(dir, 'airlock.db'));
    await store.ensureProject('default');
    const now = new Date().toISOString();
    const task: TaskRecord = {
      id: randomUUID(), projectId: 'default', apiKeyId: 'key-1', endUserId: null, username: null, sessionId: randomUUID(), conversationId: randomUUID(),
      status: 'awaiting_approval', message: 'hello', systemPrompt: null, showInHistory: true, autoExecute: false, env: null, error: null,
      usage: { inputTokens: 0, outputTokens: 0, turns: 0 }, createdAt: now, startedAt: now, completedAt: null,
      lastActivityAt: now, messageCount: 0, runStartSeq: 0, secretKeys: ['TOKEN'],
    };
    taskId = task.id;
    await store.createTask(task, { id: randomUUID(), role: 'user', content: 'hello', createdAt: now });
    await store.createApproval({
      id: randomUUID(), taskId, callId: 'c1', toolName: 'act', server: 'fake', tool: 'act', args: { n: 1 }, digest: 'd'.repeat(64),
      status: 'pending', outcome: null, reason: null, decidedBy: null, argsEdited: false, editedArgs: null, policy: 'autoExecute is false',
      requestedAt: now, decidedAt: null, expiresAt: null, inputSchema: { type: 'object' },
    });
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('five concurrent decisions of one call: the store lets exactly one through, four CONFLICT', async () => {
    // All five read the approval as pending before any decision is written: only the store's
    // `status = 'pending'` condition can tell them apart.
    const gate = new ApprovalGate(store);
    const settled = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => gate.decide(taskId, 'c1', { outcome: 'proceed_once', reason: `r${i}` }, `key:${i}`)));
    const codes = settled.map((s) => (s.status === 'fulfilled' ? 'ok' : (s.reason as { code?: string }).code));
    expect(codes.sort()).to.deep.equal(['CONFLICT', 'CONFLICT', 'CONFLICT', 'CONFLICT', 'ok']);
    const winner = settled.findIndex((s) => s.status === 'fulfilled');
    expect((await store.getApproval(taskId, 'c1'))!.decidedBy).to.equal(`key:${winner}`);
  });

  it('stores the reason of a decision scrubbed of the task\'s secrets', async () => {
    const secret = `tok-${randomUUID()}`;
    const gate = new ApprovalGate(store, () => new Scrubber({ TOKEN: secret }));
    const { record } = await gate.decide(taskId, 'c1', { outcome: 'cancel', reason: `no, ${secret} is mine` }, 'key:k');
    expect(record.reason).to.equal('no, [secret:TOKEN] is mine');
    expect(JSON.stringify(await store.listApprovals(taskId))).not.to.include(secret);
  });

  it('stores edited arguments scrubbed of the task\'s secrets', async () => {
    const secret = `tok-${randomUUID()}`;
    const gate = new ApprovalGate(store, () => new Scrubber({ TOKEN: secret }));
    const { record } = await gate.decide(taskId, 'c1', { outcome: 'proceed_once', args: { n: 2, auth: `Bearer ${secret}` } }, 'key:k');
    expect(record).to.deep.include({ argsEdited: true, editedArgs: { n: 2, auth: 'Bearer [secret:TOKEN]' } });
    expect(JSON.stringify(await store.listApprovals(taskId))).not.to.include(secret);
  });
});
