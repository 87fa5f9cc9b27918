import { expect } from 'chai';
import { SignJWT } from 'jose';
import { createApiKey } from '../../src/runtime/security/apiKeys.js';
import { startTestAirlock, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';

const JWT_SECRET = 'a-test-signing-secret-that-is-long-enough';

function jwt(sub: string): Promise<string> {
  return new SignJWT({ sub, project: 'default' }).setProtectedHeader({ alg: 'HS256' }).setAudience('airlock').setExpirationTime('1h')
    .sign(new TextEncoder().encode(JWT_SECRET));
}

const ids = (res: { body: any }) => (res.body.data as { id: string }[]).map((task) => task.id);

describe('GET /tasks: scopes, cursors and username', () => {
  let airlock: TestAirlock;
  beforeEach(async () => {
    airlock = await startTestAirlock({ env: { AIRLOCK_JWT_SECRET: JWT_SECRET, AIRLOCK_CONFIG: '' } });
  });
  afterEach(async () => airlock.stop());

  /** Creates a task with `key` (the test key by default) and waits until it has completed. */
  async function finished(message: string, key?: string): Promise<string> {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message }, ...(key ? { key } : {}) });
    expect(res.status, res.text).to.equal(201);
    await waitForStatus(airlock, res.body.data.id, ['completed']);
    return res.body.data.id;
  }

  it('lists the calling key\'s own tasks by default, the project\'s with scope=project; a second key sees none of the first\'s', async () => {
    const second = (await createApiKey(airlock.store, { projectId: 'default', name: 'second' })).key;
    const alice = await jwt('alice');
    const mine = [await finished('/reply 1'), await finished('/reply 2'), await finished('/reply 3')];
    const theirs = [await finished('/reply 4', second), await finished('/reply 5', second)];
    const hers = await finished('/reply 6', alice);

    const own = await airlock.api('/tasks');
    expect(ids(own)).to.deep.equal([...mine].reverse());
    expect(own.body.pagination).to.include({ total: 3, hasMore: false });
    expect(ids(await airlock.api('/tasks?scope=own'))).to.deep.equal([...mine].reverse());
    const other = await airlock.api('/tasks', { key: second });
    expect(ids(other)).to.deep.equal([...theirs].reverse());
    expect(other.body.pagination.total).to.equal(2);

    const project = await airlock.api('/tasks?scope=project');
    expect(ids(project)).to.deep.equal([hers, ...theirs.reverse(), ...mine.reverse()]);
    expect(project.body.pagination.total).to.equal(6);
    expect((await airlock.api('/tasks?scope=project&limit=2', { key: second })).body.pagination).to.include({ total: 6, hasMore: true });
  });

  it('lists an end user\'s own tasks only, and refuses scope=project to end users with FORBIDDEN', async () => {
    const [alice, bob] = [await jwt('alice'), await jwt('bob')];
    await finished('/reply key task');
    const hers = await finished('/reply for alice', alice);
    const list = await airlock.api('/tasks', { key: alice });
    expect(ids(list)).to.deep.equal([hers]);
    expect(list.body.pagination.total).to.equal(1);
    expect(ids(await airlock.api('/tasks?scope=own', { key: alice }))).to.deep.equal([hers]);
    expect(ids(await airlock.api('/tasks', { key: bob }))).to.deep.equal([]);
    const refused = await airlock.api('/tasks?scope=project', { key: alice });
    expect(refused.status).to.equal(403);
    expect(refused.body).to.deep.include({ success: false });
    expect(refused.body.error.code).to.equal('FORBIDDEN');
  });

  it('gives username on create, GET one and the list: the key\'s name, null for a key without one, the end user id', async () => {
    const unnamed = (await createApiKey(airlock.store, { projectId: 'default' })).key;
    const alice = await jwt('alice');
    for (const [key, username] of [[undefined, 'bootstrap'], [unnamed, null], [alice, 'alice']] as const) {
      const created = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply hi' }, ...(key ? { key } : {}) });
      expect(created.body.data, String(key)).to.include({ status: 'pending', username });
      const id = created.body.data.id;
      await waitForStatus(airlock, id, ['completed']);
      expect((await airlock.api(`/tasks/${id}`, key ? { key } : {})).body.data.username, String(key)).to.equal(username);
      const listed = (await airlock.api('/tasks', key ? { key } : {})).body.data.find((task: { id: string }) => task.id === id);
      expect(listed.username, String(key)).to.equal(username);
    }
  });

  it('walks every task once by nextCursor while tasks are created between pages; the last page is the one at its offset', async () => {
    const before: string[] = [];
    for (let i = 0; i < 12; i++) before.unshift(await finished(`/reply ${i}`));
    const seen: string[] = [];
    let page = await airlock.api('/tasks?limit=5');
    for (let n = 1; ; n++) {
      expect(page.status, page.text).to.equal(200);
      expect(page.body.pagination).to.include({ limit: 5, offset: seen.length, total: 12 + 2 * (n - 1) });
      seen.push(...ids(page));
      const { hasMore, nextCursor } = page.body.pagination;
      expect(hasMore).to.equal(nextCursor !== null);
      if (!hasMore) break;
      // Newer than every listed task: at the top, ahead of the walk.
      await finished(`/reply new ${n}a`);
      await finished(`/reply new ${n}b`);
      page = await airlock.api(`/tasks?limit=5&cursor=${nextCursor}`);
    }
    expect(seen).to.deep.equal(before);
    const last = ids(page);
    expect(last).to.deep.equal(before.slice(10));
    const total = page.body.pagination.total as number;
    const byOffset = await airlock.api(`/tasks?limit=5&offset=${total - last.length}`);
    expect(ids(byOffset)).to.deep.equal(last);
    expect(byOffset.body.pagination).to.include({ hasMore: false, nextCursor: null, offset: total - last.length });
  });

  it('refuses a cursor it did not give out, a cursor with an offset, and an unknown scope with VALIDATION_ERROR', async () => {
    await finished('/reply one');
    await finished('/reply two');
    const { nextCursor } = (await airlock.api('/tasks?limit=1')).body.pagination;
    expect(nextCursor).to.be.a('string');
    const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const bad = ['abc', 'not+base64', forged(['yesterday', 1, 0]), forged(['2026-01-01T00:00:00.000Z', -1, 0]), forged({ a: 1 }), 'A'.repeat(201)];
    for (const query of [...bad.map((cursor) => `cursor=${encodeURIComponent(cursor)}`), `cursor=${nextCursor}&offset=1`, 'scope=all', 'cursor=']) {
      const res = await airlock.api(`/tasks?${query}`);
      expect(res.status, query).to.equal(400);
      expect(res.body.error.code, query).to.equal('VALIDATION_ERROR');
    }
    expect((await airlock.api(`/tasks?cursor=${nextCursor}`)).body.data).to.have.length(1);
  });
});
