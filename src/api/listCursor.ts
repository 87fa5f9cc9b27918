import { ServiceError } from '../errors.js';
import type { TaskListPosition } from '../store/store.js';

/** Longer than any cursor this API gives out (about 60 characters). */
export const MAX_CURSOR_CHARS = 200;
const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** What a GET /tasks cursor carries: where the page before ended, and how many tasks the walk has listed so far. */
export interface ListCursor {
  after: TaskListPosition;
  offset: number;
}

/** The opaque `nextCursor` of a page: base64url of `[lastActivityAt, no, offset]`. */
export function encodeListCursor(cursor: ListCursor): string {
  return Buffer.from(JSON.stringify([cursor.after.lastActivityAt, cursor.after.no, cursor.offset])).toString('base64url');
}

/** Reads a `cursor` query parameter; VALIDATION_ERROR for anything this API did not give out. */
export function decodeListCursor(text: string): ListCursor {
  let value: unknown;
  try {
    value = text.length <= MAX_CURSOR_CHARS && /^[A-Za-z0-9_-]+$/.test(text) ? JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) : undefined;
  } catch {
    value = undefined;
  }
  if (Array.isArray(value) && value.length === 3) {
    const [lastActivityAt, no, offset] = value as unknown[];
    if (typeof lastActivityAt === 'string' && TIMESTAMP.test(lastActivityAt) && isCount(no) && isCount(offset)) {
      return { after: { lastActivityAt, no }, offset };
    }
  }
  throw new ServiceError('VALIDATION_ERROR', 'Query parameter "cursor" is not a cursor this API gave out: pass a page\'s pagination.nextCursor as it is', {
    details: [{ path: '/cursor', message: 'is not a nextCursor of an earlier page' }],
  });
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}
