import { expect } from 'chai';
import { API_KEY_CACHE_TTL_MS, ApiKeyVerifier, createApiKey, generateApiKey } from '../../src/runtime/security/apiKeys.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';

/** A store that counts key lookups, so a test can tell a remembered key from a looked-up one. */
class CountingStore extends SqliteStore {
  lookups = 0;
  override async findApiKeyByHash(keyHash: string) {
    this.lookups++;
    return super.findApiKeyByHash(keyHash);
  }
}

describe('ApiKeyVerifier', () => {
  let store: CountingStore;
  let now: number;
  let verifier: ApiKeyVerifier;

  beforeEach(() => {
    store = new CountingStore(':memory:');
    now = Date.parse('2026-01-01T00:00:00.000Z');
    verifier = new ApiKeyVerifier(store, () => now);
  });

  afterEach(async () => store.close());

  const create = (expiresInMs?: number) => createApiKey(store, { projectId: 'default', now: new Date(now), ...(expiresInMs ? { expiresInMs } : {}) });

  it('accepts a known key and looks it up once within the TTL', async () => {
    const { key, record } = await create();
    expect((await verifier.verify(key))?.id).to.equal(record.id);
    now += API_KEY_CACHE_TTL_MS - 1;
    expect((await verifier.verify(key))?.id).to.equal(record.id);
    expect(store.lookups).to.equal(1);
  });

  it('refuses a key revoked in the database once the TTL has passed', async () => {
    const { key, record } = await create();
    expect(await verifier.verify(key)).to.not.equal(undefined);
    await store.revokeApiKey(record.id, new Date(now).toISOString());
    now += API_KEY_CACHE_TTL_MS;
    expect(await verifier.verify(key)).to.equal(undefined);
  });

  it('refuses a remembered key from the moment it expires', async () => {
    const { key } = await create(API_KEY_CACHE_TTL_MS / 2);
    expect(await verifier.verify(key)).to.not.equal(undefined);
    now += API_KEY_CACHE_TTL_MS / 2;
    expect(await verifier.verify(key)).to.equal(undefined);
    expect(store.lookups).to.equal(1);
  });

  it('does not remember unknown keys: a key created after a refusal works at once', async () => {
    const key = generateApiKey();
    expect(await verifier.verify(key)).to.equal(undefined);
    await createApiKey(store, { projectId: 'default', key });
    expect(await verifier.verify(key)).to.not.equal(undefined);
  });

  it('remembers at most 1,000 keys, forgetting the oldest first', async () => {
    const keys = [];
    for (let i = 0; i <= 1_000; i++) keys.push((await create()).key);
    for (const key of keys) await verifier.verify(key);
    store.lookups = 0;
    await verifier.verify(keys[1_000]!);
    expect(store.lookups).to.equal(0);
    await verifier.verify(keys[0]!);
    expect(store.lookups).to.equal(1);
  });
});
