import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import type { Principal } from '../runtime/security/principal.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Koa middleware: gives each request an id (the caller's `X-Request-Id` when it is well formed),
 * echoes it, and logs one `request` line when the response is done. Nothing else is made per
 * request: a logger bound to the request is made only when something asks for it (requestLog).
 */
export function requestLogger(logger: Logger) {
  // The request line holds only the flat fields below, which no path of the logger's redaction list
  // (src/logger.ts) can match, so it skips redaction: that cost about as much as the rest of the
  // line. The secret scrubbing that every line passes through on its way out still applies.
  const requestLine = logger.child({}, { redact: [] });
  return async (ctx: Context, next: Next) => {
    const incoming = ctx.get('x-request-id');
    const requestId = REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.set('X-Request-Id', requestId);
    ctx.state.requestId = requestId;
    ctx.state.baseLogger = logger;
    const started = performance.now();
    try {
      await next();
    } finally {
      if (logger.isLevelEnabled('info')) {
        const ms = Math.round((performance.now() - started) * 10) / 10;
        // The path only: query strings and bodies can carry values that do not belong in a log.
        requestLine.info({ ...bindings(ctx), method: ctx.method, path: ctx.path, status: ctx.status, ms }, 'request');
      }
    }
  };
}

/** The logger of a request, bound to its id and, once authenticated, to its API key and project. */
export function requestLog(ctx: Context): Logger {
  return (ctx.state.log ??= (ctx.state.baseLogger as Logger).child(bindings(ctx)));
}

function bindings(ctx: Context): Record<string, string> {
  const principal = ctx.state.principal as Principal | undefined;
  const requestId = ctx.state.requestId as string;
  return principal?.kind === 'apiKey' ? { requestId, apiKeyId: principal.apiKeyId, projectId: principal.projectId } : { requestId };
}
