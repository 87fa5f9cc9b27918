import type { Context, Next } from 'koa';
import { ServiceError } from '../errors.js';
import type { ReadinessReport } from '../runtime/tasks/readiness.js';

/** GET (and HEAD) of liveness: answered from memory, touching nothing that could hang. */
export const HEALTHZ_PATH = '/healthz';
/** GET (and HEAD) of readiness: a round trip to the store and the sandbox probe. */
export const READYZ_PATH = '/readyz';

export interface HealthOptions {
  /** Extra facts for /healthz, read from memory. */
  health?: () => Record<string, unknown>;
  /** The readiness check; without one, there is no /readyz. */
  readiness?: () => Promise<ReadinessReport>;
}

/**
 * Koa middleware for the probes, without auth: answered ahead of the API's router (a second router
 * would be one more dispatch on every API request). Not ready is NOT_READY (503) in the envelope,
 * with every check in `details`.
 */
export function healthChecks(options: HealthOptions) {
  return async (ctx: Context, next: Next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    const path = ctx.path.endsWith('/') ? ctx.path.slice(0, -1) : ctx.path;
    if (path === HEALTHZ_PATH) {
      ctx.body = { success: true, data: { status: 'ok', ...(options.health?.() ?? {}) } };
      return undefined;
    }
    if (path !== READYZ_PATH || !options.readiness) return next();
    const report = await options.readiness();
    ctx.set('Cache-Control', 'no-store');
    if (report.ready) {
      ctx.body = { success: true, data: { status: 'ready', checks: report.checks } };
      return undefined;
    }
    const failed = Object.entries(report.checks).filter(([, check]) => !check.ok);
    const why = failed.map(([name, check]) => `${name}: ${check.error ?? 'failed'}`).join('; ');
    throw new ServiceError('NOT_READY', `Airlock is not ready (${why})`, { details: { failed: failed.map(([name]) => name), checks: report.checks } });
  };
}
