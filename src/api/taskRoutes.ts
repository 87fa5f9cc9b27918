import type Router from '@koa/router';
import type { Context } from 'koa';
import { koaBody } from 'koa-body';
import { ServiceError } from '../errors.js';
import type { Principal } from '../runtime/principal.js';
import type { AppOptions } from './app.js';
import { requestLog } from './requestLog.js';
import { parseApprove, parseCreateTask, parseFollowUp, parseListQuery, parseResumeSeq } from './requests.js';
import type { RequestBody } from './requests.js';
import { SseSink } from './sse.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The task routes of API.md sections 3–6. */
export function taskRoutes(router: Router, options: AppOptions): void {
  const { tasks, streams } = options;
  const body = koaBody({
    multipart: true,
    jsonLimit: options.bodyLimitBytes,
    formLimit: options.bodyLimitBytes,
    textLimit: options.bodyLimitBytes,
    // Uploads belong to task workspaces; until a request can carry them, a file part is refused
    // by the parser before anything is written.
    formidable: { maxFiles: 0, maxFieldsSize: options.bodyLimitBytes },
    onError: (err) => {
      throw multipartError(err);
    },
  });

  router.post('/tasks', body, async (ctx) => {
    const input = parseCreateTask(requestBody(ctx));
    const result = await tasks.create(principal(ctx), input);
    ctx.status = 201;
    ctx.body = { success: true, data: result };
  });

  router.get('/tasks', async (ctx) => {
    const query = parseListQuery(ctx.query);
    const { tasks: items, total } = await tasks.list(principal(ctx), query);
    ctx.body = { success: true, data: items, pagination: { total, limit: query.limit, offset: query.offset, hasMore: query.offset + items.length < total } };
  });

  router.get('/tasks/:id', async (ctx) => {
    ctx.body = { success: true, data: await tasks.get(principal(ctx), taskId(ctx)) };
  });

  router.post('/tasks/:id/messages', body, async (ctx) => {
    const id = taskId(ctx);
    const input = parseFollowUp(requestBody(ctx));
    ctx.body = { success: true, data: await tasks.followUp(principal(ctx), id, input) };
  });

  router.delete('/tasks/:id', async (ctx) => {
    await tasks.cancel(principal(ctx), taskId(ctx));
    ctx.body = { success: true, data: { message: 'Task cancelled' } };
  });

  router.post('/tasks/:id/tools/:callId/approve', body, async (ctx) => {
    const id = taskId(ctx);
    const callId = (ctx as Context & { params: Record<string, string> }).params.callId ?? '';
    const answer = parseApprove(requestBody(ctx));
    ctx.body = { success: true, data: await tasks.approve(principal(ctx), id, callId, answer) };
  });

  router.get('/tasks/:id/approvals', async (ctx) => {
    ctx.body = { success: true, data: { approvals: await tasks.approvals(principal(ctx), taskId(ctx)) } };
  });

  router.get('/tasks/:id/history', async (ctx) => {
    ctx.body = { success: true, data: await tasks.history(principal(ctx), taskId(ctx)) };
  });

  router.get('/tasks/:id/stream', async (ctx) => {
    const after = parseResumeSeq(ctx.get('last-event-id') || undefined, 'Last-Event-ID') ?? parseResumeSeq(queryString(ctx, 'after'), 'after');
    // Errors before the first byte (NOT_FOUND, bad resume id) still get the JSON envelope.
    const run = await streams.prepare(principal(ctx), taskId(ctx), after);
    ctx.respond = false;
    const sink = new SseSink(ctx.res, options.heartbeatIntervalMs);
    try {
      await run(sink);
    } catch (err) {
      requestLog(ctx).error({ err }, 'stream failed');
    }
    await sink.whenClosed();
  });
}

// formidable's internal codes (formidable/src/FormidableError.js) mapped to the API's codes.
const FORMIDABLE_TOO_LARGE = new Set([1006, 1007, 1009, 1016]);
const FORMIDABLE_MAX_FILES = 1015;

function multipartError(err: Error): Error {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'number' || code < 1000 || code > 1099) return err;
  if (code === FORMIDABLE_MAX_FILES) return new ServiceError('VALIDATION_ERROR', 'This Airlock does not accept file uploads yet', { details: [{ path: '/files', message: 'not accepted' }] });
  if (FORMIDABLE_TOO_LARGE.has(code)) return new ServiceError('PAYLOAD_TOO_LARGE', 'The multipart body is larger than this server accepts');
  if (code === 1017 || code === 1018) return err;
  return new ServiceError('VALIDATION_ERROR', `Malformed multipart/form-data body: ${err.message}`);
}

function principal(ctx: Context): Principal {
  return ctx.state.principal as Principal;
}

// Ids that are not UUIDs cannot name a task: NOT_FOUND, the same as an unknown one.
function taskId(ctx: Context): string {
  const id = (ctx as Context & { params: Record<string, string> }).params.id ?? '';
  if (!UUID.test(id)) throw new ServiceError('NOT_FOUND', 'Task not found');
  return id.toLowerCase();
}

function queryString(ctx: Context, name: string): string | undefined {
  const value = ctx.query[name];
  if (Array.isArray(value)) throw new ServiceError('VALIDATION_ERROR', `Query parameter "${name}" is given more than once`);
  return value;
}

const JSON_TYPE = /^application\/([\w.+-]*\+)?json\b/i;

function requestBody(ctx: Context): RequestBody {
  // A look at the header is all a JSON body needs; ctx.is() costs more (and is null without a body).
  if (JSON_TYPE.test(ctx.get('content-type'))) return jsonBody(ctx);
  if (ctx.is('multipart')) {
    const files = ctx.request.files ? Object.values(ctx.request.files).flat().length : 0;
    return { kind: 'multipart', fields: ctx.request.body ?? {}, fileCount: files };
  }
  throw new ServiceError('VALIDATION_ERROR', 'Send the body as application/json or multipart/form-data');
}

function jsonBody(ctx: Context): RequestBody {
  const fields: unknown = ctx.request.body;
  if (!fields || typeof fields !== 'object' || Array.isArray(fields)) throw new ServiceError('VALIDATION_ERROR', 'The body must be a JSON object');
  return { kind: 'json', fields, fileCount: 0 };
}
