import { expect } from 'chai';
import { SignJWT } from 'jose';
import { createApiKey } from '../../src/runtime/security/apiKeys.js';
import { startTestAirlock, waitFor } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';

const JWT_SECRET = 'a-test-signing-secret-that-is-long-enough';

async function jwt(claims: Record<string, unknown>, options: { secret?: string; audience?: string; expiresIn?: string; alg?: string } = {}) {
  let builder = new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'HS256' }).setIssuedAt().setAudience(options.audience ?? 'airlock');
  if (options.expiresIn !== 'none') builder = builder.setExpirationTime(options.expiresIn ?? '1h');
  return builder.sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}

describe('Authentication', () => {
  let airlock: TestAirlock;
  before(async () => {
    airlock = await startTestAirlock({ env: { AIRLOCK_JWT_SECRET: JWT_SECRET, AIRLOCK_CONFIG: '' } });
  });
  after(async () => airlock.stop());

  const code = (res: { body: any }) => res.body?.error?.code;

  it('answers AUTH_REQUIRED without a credential', async () => {
    const res = await airlock.api('/tasks', { key: null });
    expect(res.status).to.equal(401);
    expect(res.body).to.deep.include({ success: false });
    expect(code(res)).to.equal('AUTH_REQUIRED');
  });

  it('answers INVALID_AUTH_FORMAT for a credential that is neither key nor JWT', async () => {
    for (const header of ['Bearer nonsense', 'Basic abc', `Bearer airlock_${'g'.repeat(64)}`]) {
      const res = await airlock.api('/tasks', { headers: { authorization: header }, key: null });
      expect(res.status, header).to.equal(401);
      expect(code(res), header).to.equal('INVALID_AUTH_FORMAT');
    }
  });

  it('accepts a key as Bearer and as X-API-Key', async () => {
    expect((await airlock.api('/tasks')).status).to.equal(200);
    expect((await airlock.api('/tasks', { headers: { 'x-api-key': airlock.key }, key: null })).status).to.equal(200);
  });

  it('answers INVALID_API_KEY for unknown, revoked and expired keys', async () => {
    const unknown = await airlock.api('/tasks', { key: `airlock_${'0'.repeat(64)}` });
    expect(code(unknown)).to.equal('INVALID_API_KEY');

    const revoked = await createApiKey(airlock.store, { projectId: 'default' });
    expect((await airlock.api('/tasks', { key: revoked.key })).status).to.equal(200);
    await airlock.store.revokeApiKey(revoked.record.id, new Date().toISOString());
    // A running Airlock trusts a verified key for API_KEY_CACHE_TTL_MS (1 s) before it looks again.
    await waitFor(async () => code(await airlock.api('/tasks', { key: revoked.key })) === 'INVALID_API_KEY', 'the revoked key to be refused');

    const expired = await createApiKey(airlock.store, { projectId: 'default', expiresInMs: 1_000, now: new Date(Date.now() - 5_000) });
    const res = await airlock.api('/tasks', { key: expired.key });
    expect(res.status).to.equal(401);
    expect(code(res)).to.equal('INVALID_API_KEY');
  });

  it('stores keys only as hashes', async () => {
    const { key } = await createApiKey(airlock.store, { projectId: 'default' });
    const keys = await airlock.store.listApiKeys();
    expect(JSON.stringify(keys)).not.to.include(key);
    expect(JSON.stringify(keys)).not.to.include(key.slice(16));
  });

  it('hides another project\'s tasks as NOT_FOUND on every route', async () => {
    const other = await createApiKey(airlock.store, { projectId: 'other' });
    const created = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply mine' } });
    const id = created.body.data.id;
    for (const [method, path] of [['GET', `/tasks/${id}`], ['GET', `/tasks/${id}/history`], ['GET', `/tasks/${id}/stream`], ['DELETE', `/tasks/${id}`]] as const) {
      const res = await airlock.api(path, { method, key: other.key });
      expect(res.status, `${method} ${path}`).to.equal(404);
      expect(code(res)).to.equal('NOT_FOUND');
    }
    const followUp = await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: 'hi' }, key: other.key });
    expect(code(followUp)).to.equal('NOT_FOUND');
    const list = await airlock.api('/tasks', { key: other.key });
    expect(list.body.data.map((t: { id: string }) => t.id)).not.to.include(id);
  });

  describe('JWTs', () => {
    it('sees only its own end user\'s tasks', async () => {
      const alice = await jwt({ sub: 'alice', project: 'default' });
      const bob = await jwt({ sub: 'bob', project: 'default' });
      const created = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply for alice' }, key: alice });
      expect(created.status).to.equal(201);
      const id = created.body.data.id;
      const mine = await airlock.api(`/tasks/${id}`, { key: alice });
      expect(mine.body.data).to.include({ endUserId: 'alice', apiKeyId: null });
      expect(code(await airlock.api(`/tasks/${id}`, { key: bob }))).to.equal('NOT_FOUND');
      expect((await airlock.api('/tasks', { key: bob })).body.data).to.have.length(0);
    });

    it('refuses bad signatures, expired tokens, wrong audiences and alg none with INVALID_TOKEN', async () => {
      const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'x', project: 'default', aud: 'airlock', exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')}.`;
      const tokens = [
        await jwt({ sub: 'x', project: 'default' }, { secret: 'another-secret-that-is-long-enough-too' }),
        await jwt({ sub: 'x', project: 'default' }, { expiresIn: '-1m' }),
        await jwt({ sub: 'x', project: 'default' }, { audience: 'someone-else' }),
        await jwt({ sub: 'x', project: 'default' }, { expiresIn: 'none' }),
        await jwt({ project: 'default' }),
        await jwt({ sub: 'x', project: 'no-such-project' }),
        none,
      ];
      for (const token of tokens) {
        const res = await airlock.api('/tasks', { key: token });
        expect(res.status, token).to.equal(401);
        expect(code(res), token).to.equal('INVALID_TOKEN');
      }
    });
  });

  it('answers JWT_NOT_CONFIGURED when no signing secret is set', async () => {
    const plain = await startTestAirlock();
    try {
      const res = await plain.api('/tasks', { key: await jwt({ sub: 'a', project: 'default' }) });
      expect(res.status).to.equal(501);
      expect(code(res)).to.equal('JWT_NOT_CONFIGURED');
    } finally {
      await plain.stop();
    }
  });
});

describe('Rate limiting', () => {
  it('answers RATE_LIMITED with Retry-After past a key\'s limit, per key', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'airlock-rl-'));
    await writeFile(join(dir, 'c.json'), JSON.stringify({ server: { rateLimit: { requestsPerMinute: 3 } } }));
    const airlock = await startTestAirlock({ env: { AIRLOCK_CONFIG: join(dir, 'c.json') } });
    try {
      for (let i = 0; i < 3; i++) expect((await airlock.api('/tasks')).status).to.equal(200);
      const limited = await airlock.api('/tasks');
      expect(limited.status).to.equal(429);
      expect(limited.body.error.code).to.equal('RATE_LIMITED');
      expect(Number(limited.headers.get('retry-after'))).to.be.within(1, 20);
      const other = await createApiKey(airlock.store, { projectId: 'default' });
      expect((await airlock.api('/tasks', { key: other.key })).status).to.equal(200);
      expect((await airlock.api('/healthz', { key: null })).status).to.equal(200);
    } finally {
      await airlock.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
