/** Every error code the API can answer with (API.md section 1). */
export type ErrorCode =
  | 'AUTH_REQUIRED'
  | 'INVALID_AUTH_FORMAT'
  | 'INVALID_API_KEY'
  | 'INVALID_TOKEN'
  | 'JWT_NOT_CONFIGURED'
  | 'ORIGIN_NOT_ALLOWED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'VALIDATION_ERROR'
  | 'INVALID_ENV'
  | 'PAYLOAD_TOO_LARGE'
  | 'CONFLICT'
  | 'RATE_LIMITED'
  | 'EXECUTION_ERROR'
  | 'INTERNAL_ERROR'
  | 'NOT_READY';

/** The HTTP status of each code; the compiler keeps this map complete. */
export const ERROR_STATUS: Record<ErrorCode, number> = {
  AUTH_REQUIRED: 401,
  INVALID_AUTH_FORMAT: 401,
  INVALID_API_KEY: 401,
  INVALID_TOKEN: 401,
  JWT_NOT_CONFIGURED: 501,
  ORIGIN_NOT_ALLOWED: 403,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  VALIDATION_ERROR: 400,
  INVALID_ENV: 400,
  PAYLOAD_TOO_LARGE: 413,
  CONFLICT: 409,
  RATE_LIMITED: 429,
  EXECUTION_ERROR: 500,
  INTERNAL_ERROR: 500,
  NOT_READY: 503,
};

/** One invalid field of a request: a JSON pointer into the body or query, and what is wrong with it. */
export interface FieldProblem {
  path: string;
  message: string;
}

export interface ServiceErrorOptions {
  cause?: unknown;
  details?: FieldProblem[] | Record<string, unknown>;
  /** Extra response headers, e.g. Retry-After for RATE_LIMITED. */
  headers?: Record<string, string>;
}

/**
 * An error whose message is safe to show the caller. Anything thrown that is not a ServiceError is
 * treated as our bug: INTERNAL_ERROR with a generic message, the detail in the log only.
 */
export class ServiceError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: FieldProblem[] | Record<string, unknown>;
  readonly headers?: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: ServiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ServiceError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.details = options.details;
    this.headers = options.headers;
  }
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof ServiceError;
}

/** A short description of any thrown value, for logs and tool errors (never for secrets: scrub first). */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
