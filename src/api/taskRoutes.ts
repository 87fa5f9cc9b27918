import type Router from '@koa/router';
import type { Context } from 'koa';
import { koaBody } from 'koa-body';
import { ServiceError } from '../errors.js';
import type { Principal } from '../runtime/security/principal.js';
import { Scrubber } from '../runtime/security/scrubber.js';
import type { AppOptions } from './app.js';
import { attachmentDisposition } from './contentDisposition.js';
import { JSON_TYPE, jsonOrElse } from './jsonBody.js';
import { encodeListCursor } from './listCursor.js';
import { requestLog } from './requestLog.js';
import { parseApprove, parseCreateTask, parseFollowUp, parseInputAnswer, parseListQuery, parseResumeSeq } from './requests.js';
import type { RequestBody } from './requests.js';
import { SseSink } from './sse.js';
import { multipartError, receivedFiles, uploadBody } from './uploadBody.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The task routes of API.md sections 3–6. */
export function taskRoutes(router: Router, options: AppOptions): void {
  const { tasks, streams, artifacts } = options;
  // Multipart only: JSON (plain or compressed) is read by jsonOrElse, and no route takes forms or
  // text, which are refused unread (requestBody) rather than parsed to be thrown away.
  const parser = koaBody({
    multipart: true,
    json: false,
    urlencoded: false,
    text: false,
    // Routes without files refuse a file part in the parser, before anything is written.
    formidable: { maxFiles: 0, maxFieldsSize: options.bodyLimitBytes },
    onError: (err) => {
      throw multipartError(err);
    },
  });
  const body = jsonOrElse(parser, options.bodyLimitBytes);
  const withFiles = jsonOrElse(uploadBody(parser, options.uploads, options.bodyLimitBytes), options.bodyLimitBytes);

  // What is logged about a request on a task is scrubbed of the task's live secrets (errorHandler).
  router.param('id', (id, ctx, next) => {
    if (UUID.test(id)) ctx.state.scrubber = tasks.scrubberOf(id.toLowerCase());
    return next();
  });

  router.post('/tasks', withFiles, async (ctx) => {
    const input = parseCreateTask(requestBody(ctx));
    if (input.secrets) ctx.state.scrubber = new Scrubber(input.secrets);
    const result = await tasks.create(principal(ctx), { ...input, uploads: await receivedFiles(ctx)?.stage() });
    ctx.status = 201;
    ctx.body = { success: true, data: result };
  });

  router.get('/tasks', async (ctx) => {
    const query = parseListQuery(ctx.query);
    const { tasks: items, total, next } = await tasks.list(principal(ctx), query);
    const nextCursor = next && encodeListCursor({ after: next, offset: query.offset + items.length });
    ctx.body = { success: true, data: items, pagination: { total, limit: query.limit, offset: query.offset, hasMore: next !== null, nextCursor } };
  });

  router.get('/tasks/:id', async (ctx) => {
    ctx.body = { success: true, data: await tasks.get(principal(ctx), taskId(ctx)) };
  });

  router.post('/tasks/:id/messages', withFiles, async (ctx) => {
    const id = taskId(ctx);
    const input = parseFollowUp(requestBody(ctx));
    if (input.secrets) ctx.state.scrubber = ((ctx.state.scrubber as Scrubber | undefined) ?? Scrubber.NONE).with(input.secrets);
    const files = receivedFiles(ctx);
    // Files are checked and extracted only for a task that can take the follow-up now.
    if (files) await tasks.followUpTarget(principal(ctx), id);
    ctx.body = { success: true, data: await tasks.followUp(principal(ctx), id, { ...input, uploads: await files?.stage() }) };
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

  router.post('/tasks/:id/inputs/:requestId', body, async (ctx) => {
    const id = taskId(ctx);
    const requestId = (ctx as Context & { params: Record<string, string> }).params.requestId ?? '';
    const answer = parseInputAnswer(requestBody(ctx));
    ctx.body = { success: true, data: await tasks.answerInput(principal(ctx), id, requestId, answer) };
  });

  router.get('/tasks/:id/approvals', async (ctx) => {
    ctx.body = { success: true, data: { approvals: await tasks.approvals(principal(ctx), taskId(ctx)) } };
  });

  router.get('/tasks/:id/history', async (ctx) => {
    ctx.body = { success: true, data: await tasks.history(principal(ctx), taskId(ctx)) };
  });

  router.get('/tasks/:id/artifacts', async (ctx) => {
    const id = taskId(ctx);
    onlyQuery(ctx, []);
    const { files, truncated } = await artifacts.list(principal(ctx), id);
    // A file's name may hold a task's secret (an upload named so, or a tool's output): the list
    // shows it scrubbed; the archive holds the workspace as it is.
    const scrubber = scrubberOf(ctx);
    const shown = files.map((file) => ({ ...file, name: scrubber.text(file.name), path: scrubber.text(file.path) }));
    ctx.body = { success: true, data: { files: shown, ...(truncated ? { truncated } : {}) } };
  });

  router.get('/tasks/:id/artifacts/download', async (ctx) => {
    const id = taskId(ctx);
    onlyQuery(ctx, ['path']);
    const path = queryString(ctx, 'path');
    if (!path) throw new ServiceError('VALIDATION_ERROR', 'Query parameter "path" is required: the file\'s path relative to the workspace, as the artifacts list gives it', { details: [{ path: '/path', message: 'is required' }] });
    const file = await artifacts.file(principal(ctx), id, path);
    ctx.body = file.handle.createReadStream();
    // Set as is: ctx.type would add a charset, and the encoding of a workspace file is unknown.
    ctx.set('Content-Type', file.mimeType);
    ctx.length = file.size;
    ctx.set('Content-Disposition', attachmentDisposition(scrubberOf(ctx).text(file.name)));
    ctx.set('X-Content-Type-Options', 'nosniff');
  });

  router.get('/tasks/:id/artifacts/archive', async (ctx) => {
    const id = taskId(ctx);
    onlyQuery(ctx, []);
    ctx.body = await artifacts.archive(principal(ctx), id);
    ctx.type = 'application/gzip';
    ctx.set('Content-Disposition', attachmentDisposition(`task-${id}.tar.gz`));
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

function principal(ctx: Context): Principal {
  return ctx.state.principal as Principal;
}

// Ids that are not UUIDs cannot name a task: NOT_FOUND, the same as an unknown one.
function taskId(ctx: Context): string {
  const id = (ctx as Context & { params: Record<string, string> }).params.id ?? '';
  if (!UUID.test(id)) throw new ServiceError('NOT_FOUND', 'Task not found');
  return id.toLowerCase();
}

// Unknown query parameters are refused, as unknown body fields are.
function onlyQuery(ctx: Context, known: string[]): void {
  const unknown = Object.keys(ctx.query).find((key) => !known.includes(key));
  if (unknown !== undefined) throw new ServiceError('VALIDATION_ERROR', `Unknown query parameter "${unknown}"`, { details: [{ path: `/${unknown}`, message: 'is not a known field' }] });
}

function queryString(ctx: Context, name: string): string | undefined {
  const value = ctx.query[name];
  if (Array.isArray(value)) throw new ServiceError('VALIDATION_ERROR', `Query parameter "${name}" is given more than once`);
  return value;
}

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

/** The scrubber of the task a request names (set by the `:id` parameter), else none. */
function scrubberOf(ctx: Context): Scrubber {
  return (ctx.state.scrubber as Scrubber | undefined) ?? Scrubber.NONE;
}
