import { hash, randomBytes, randomUUID } from 'node:crypto';
import { ServiceError } from '../../errors.js';
import type { ApiKeyRecord, Store } from '../../store/store.js';

export const API_KEY_PATTERN = /^airlock_[0-9a-f]{64}$/;
const PREFIX_CHARS = 'airlock_'.length + 8;

/** SHA-256 of a key: keys are 256 random bits, so a fast hash is enough and lookups stay O(1). */
export function hashApiKey(key: string): string {
  return hash('sha256', key, 'hex');
}

export function generateApiKey(): string {
  return `airlock_${randomBytes(32).toString('hex')}`;
}

/** Parses "30d", "12h", "45m", "3600s" into milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+)\s*(s|m|h|d|w)$/.exec(text.trim());
  if (!match) throw new ServiceError('VALIDATION_ERROR', `"${text}" is not a duration like 30d, 12h, 45m or 3600s`);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[match[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  const ms = Number(match[1]) * unit;
  if (ms <= 0) throw new ServiceError('VALIDATION_ERROR', 'The duration must be positive');
  return ms;
}

/** Creates a key for a project; the plain key is returned once and never stored. */
export async function createApiKey(store: Store, options: { projectId: string; name?: string; key?: string; expiresInMs?: number; now?: Date }): Promise<{ key: string; record: ApiKeyRecord }> {
  const key = options.key ?? generateApiKey();
  if (!API_KEY_PATTERN.test(key)) throw new ServiceError('VALIDATION_ERROR', 'An API key is "airlock_" followed by 64 lowercase hex characters');
  const now = options.now ?? new Date();
  const record: ApiKeyRecord = {
    id: `key_${randomUUID().replace(/-/g, '').slice(0, 20)}`,
    projectId: options.projectId,
    name: options.name ?? null,
    keyHash: hashApiKey(key),
    keyPrefix: key.slice(0, PREFIX_CHARS),
    createdAt: now.toISOString(),
    expiresAt: options.expiresInMs ? new Date(now.getTime() + options.expiresInMs).toISOString() : null,
    revokedAt: null,
  };
  await store.ensureProject(options.projectId);
  await store.createApiKey(record);
  return { key, record };
}

/** How long a running Airlock trusts a key it has looked up: a revoked key is refused within this time. */
export const API_KEY_CACHE_TTL_MS = 1_000;
const API_KEY_CACHE_ENTRIES = 1_000;

/**
 * Verifies API keys. A key's record is remembered, by hash, for API_KEY_CACHE_TTL_MS, so that a
 * busy key costs one hash per request instead of a lookup: a key revoked in the database (airlock
 * keys revoke) is refused within that time. Expiry is checked on every request. Unknown keys are
 * not remembered, so a new key works at once.
 */
export class ApiKeyVerifier {
  private readonly known = new Map<string, { record: ApiKeyRecord; until: number; expiresAtMs: number }>();

  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {}

  /** The key's record when it is known, unrevoked and unexpired. */
  async verify(key: string): Promise<ApiKeyRecord | undefined> {
    const keyHash = hashApiKey(key);
    const now = this.now();
    let entry = this.known.get(keyHash);
    if (!entry || entry.until <= now) {
      const record = await this.store.findApiKeyByHash(keyHash);
      this.known.delete(keyHash);
      if (!record) return undefined;
      // Insertion order is age order: past the bound, the oldest entry goes.
      if (this.known.size >= API_KEY_CACHE_ENTRIES) this.known.delete(this.known.keys().next().value!);
      this.known.set(keyHash, (entry = { record, until: now + API_KEY_CACHE_TTL_MS, expiresAtMs: record.expiresAt ? Date.parse(record.expiresAt) : Infinity }));
    }
    return entry.record.revokedAt || entry.expiresAtMs <= now ? undefined : entry.record;
  }
}
