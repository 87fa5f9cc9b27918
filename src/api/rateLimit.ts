import type { Context, Next } from 'koa';
import { ServiceError } from '../errors.js';
import type { Principal } from '../runtime/security/principal.js';

export interface RateLimitOptions {
  /** Sustained requests per minute per caller. */
  requestsPerMinute: number;
  /** Requests a caller may make at once after being idle (default: requestsPerMinute). */
  burst?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per API key (or per end user for JWTs): bursts up to `burst`, refilled at
 * requestsPerMinute. Past it: RATE_LIMITED with Retry-After in whole seconds.
 */
export function rateLimit(options: RateLimitOptions) {
  const capacity = options.burst ?? options.requestsPerMinute;
  const perMs = options.requestsPerMinute / 60_000;
  const now = options.now ?? Date.now;
  const buckets = new Map<string, Bucket>();
  let lastSweep = now();

  return async (ctx: Context, next: Next) => {
    const principal = ctx.state.principal as Principal;
    const id = principal.kind === 'apiKey' ? `k:${principal.apiKeyId}` : `u:${principal.projectId}:${principal.endUserId}`;
    const t = now();
    if (t - lastSweep > 60_000) {
      // Buckets that have refilled completely carry no state worth keeping.
      for (const [key, bucket] of buckets) if (bucket.tokens + (t - bucket.at) * perMs >= capacity) buckets.delete(key);
      lastSweep = t;
    }
    const bucket = buckets.get(id) ?? { tokens: capacity, at: t };
    bucket.tokens = Math.min(capacity, bucket.tokens + (t - bucket.at) * perMs);
    bucket.at = t;
    buckets.set(id, bucket);
    if (bucket.tokens < 1) {
      const retryAfter = Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
      throw new ServiceError('RATE_LIMITED', `Too many requests for this credential; retry in ${retryAfter} s`, { headers: { 'Retry-After': String(retryAfter) } });
    }
    bucket.tokens -= 1;
    await next();
  };
}
