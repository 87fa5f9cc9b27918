import type { Context, Middleware, Next } from 'koa';
import { koaBody } from 'koa-body';
import { ServiceError } from '../errors.js';
import type { UploadReceiver, Uploads } from '../sandbox/uploads.js';

/** The multipart field that carries files (API.md section 3). */
const FILES_FIELD = 'files';

/**
 * The body parser of routes that take files (create, follow-up): JSON goes to `json`; multipart is
 * parsed with each file part streamed to disk in a temp directory of its own, under the upload
 * limits. The temp directory is removed when the request ends, whether it succeeded (the files
 * were moved into a workspace) or failed at any point: a refused request leaves nothing behind.
 */
export function uploadBody(json: Middleware, uploads: Uploads, fieldsLimitBytes: number): Middleware {
  return async (ctx: Context, next: Next) => {
    if (!ctx.is('multipart')) return json(ctx, next);
    const receiver = await uploads.receive();
    const misplaced: string[] = [];
    try {
      const parse = koaBody({
        multipart: true,
        json: false,
        urlencoded: false,
        text: false,
        formidable: {
          uploadDir: receiver.dir,
          maxFieldsSize: fieldsLimitBytes,
          allowEmptyFiles: true,
          minFileSize: 0,
          // The receiver's writers count the bytes of each file and refuse it as soon as it passes
          // the limit; formidable's own check, at the end of a part, would only race them.
          maxFileSize: Number.POSITIVE_INFINITY,
          maxTotalFileSize: Number.POSITIVE_INFINITY,
          filter: (part) => {
            if (part.name === FILES_FIELD) return true;
            misplaced.push(part.name ?? '');
            return false;
          },
          // @types/formidable leaves out the fields a VolatileFile is built with (formidable 3.5).
          fileWriteStreamHandler: (file) => receiver.openFile((file as { originalFilename?: string | null } | undefined)?.originalFilename ?? ''),
        },
        onError: (err) => {
          throw receiver.refusal ?? multipartError(err);
        },
      });
      await parse(ctx, async () => {
        if (receiver.refusal) throw receiver.refusal;
        if (misplaced.length) {
          const field = misplaced[0]!;
          throw new ServiceError('VALIDATION_ERROR', `A file was sent in the field "${field}": send files in the field "${FILES_FIELD}"`, { details: [{ path: `/${field}`, message: `files go in "${FILES_FIELD}"` }] });
        }
        ctx.state.uploads = receiver;
        await next();
      });
    } finally {
      await receiver.discard();
    }
  };
}

/** The files of a multipart request, when it has any. */
export function receivedFiles(ctx: Context): UploadReceiver | undefined {
  const receiver = ctx.state.uploads as UploadReceiver | undefined;
  return receiver?.fileCount ? receiver : undefined;
}

// formidable's internal codes (formidable/src/FormidableError.js) mapped to the API's codes.
const FORMIDABLE_TOO_LARGE = new Set([1006, 1007, 1009, 1016]);
const FORMIDABLE_MAX_FILES = 1015;

/** A multipart parsing error as the API reports it; ServiceErrors (the receiver's limits) pass through. */
export function multipartError(err: Error): Error {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'number' || code < 1000 || code > 1099) return err;
  if (code === FORMIDABLE_MAX_FILES) return new ServiceError('VALIDATION_ERROR', 'This route does not accept files', { details: [{ path: `/${FILES_FIELD}`, message: 'not accepted' }] });
  if (FORMIDABLE_TOO_LARGE.has(code)) return new ServiceError('PAYLOAD_TOO_LARGE', 'The multipart body is larger than this server accepts');
  if (code === 1017 || code === 1018) return err;
  return new ServiceError('VALIDATION_ERROR', `Malformed multipart/form-data body: ${err.message}`);
}
