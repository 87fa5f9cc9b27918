import type { Context, Next } from 'koa';
import { ServiceError } from '../errors.js';
import type { Scrubber } from '../runtime/security/scrubber.js';
import { taskLog } from '../runtime/events/taskLog.js';
import { requestLog } from './requestLog.js';

/**
 * The one middleware that turns errors into HTTP: ServiceErrors become the API's envelope,
 * errors of the body parser become VALIDATION_ERROR / PAYLOAD_TOO_LARGE, anything else is our bug:
 * INTERNAL_ERROR with a generic message, the detail in the log only.
 */
export function errorHandler() {
  return async (ctx: Context, next: Next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) {
        throw new ServiceError('NOT_FOUND', `No route for ${ctx.method} ${ctx.path}`);
      }
    } catch (thrown) {
      const err = toServiceError(thrown);
      // A request about a task (or carrying secrets) is logged scrubbed of that task's secrets.
      const scrubber = ctx.state.scrubber as Scrubber | undefined;
      const log = scrubber ? taskLog(requestLog(ctx), scrubber) : requestLog(ctx);
      if (err.code === 'INTERNAL_ERROR') log.error({ err: thrown }, 'unexpected error');
      if (ctx.headerSent || ctx.respond === false) {
        // A stream already started: the error can only be logged, and the connection closed.
        if (err.code !== 'INTERNAL_ERROR') log.warn({ code: err.code }, err.message);
        ctx.res.destroy();
        return;
      }
      ctx.status = err.status;
      for (const [name, value] of Object.entries(err.headers ?? {})) ctx.set(name, value);
      ctx.body = { success: false, error: errorBody(err) };
    }
  };
}

/** The most `details` an error lists; how many more there were is in `detailsOmitted`. */
export const MAX_ERROR_DETAILS = 100;

function errorBody(err: ServiceError): Record<string, unknown> {
  const { code, message, details } = err;
  if (!details) return { code, message };
  if (!Array.isArray(details) || details.length <= MAX_ERROR_DETAILS) return { code, message, details };
  return { code, message, details: details.slice(0, MAX_ERROR_DETAILS), detailsOmitted: details.length - MAX_ERROR_DETAILS };
}

function toServiceError(thrown: unknown): ServiceError {
  if (thrown instanceof ServiceError) return thrown;
  const status = (thrown as { status?: number; statusCode?: number })?.status ?? (thrown as { statusCode?: number })?.statusCode;
  const type = (thrown as { type?: string })?.type;
  if (status === 413 || type === 'entity.too.large') return new ServiceError('PAYLOAD_TOO_LARGE', 'The request body is larger than this server accepts');
  if (type === 'entity.parse.failed' || (thrown instanceof SyntaxError && status === 400)) return new ServiceError('VALIDATION_ERROR', 'The body is not valid JSON');
  if (status === 415 || type === 'encoding.unsupported' || type === 'charset.unsupported') return new ServiceError('VALIDATION_ERROR', 'Unsupported content type or encoding');
  if (status && status >= 400 && status < 500 && (thrown as { expose?: boolean }).expose) {
    return new ServiceError(status === 404 ? 'NOT_FOUND' : 'VALIDATION_ERROR', (thrown as Error).message);
  }
  return new ServiceError('INTERNAL_ERROR', 'Internal error', { cause: thrown });
}
