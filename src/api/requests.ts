import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { ServiceError } from '../errors.js';
import type { FieldProblem } from '../errors.js';
import type { InputAction } from '../runtime/approvals/inputRequests.js';
import type { CreateTaskInput, FollowUpInput } from '../runtime/tasks/taskService.js';
import type { TaskListPosition, TaskStatus } from '../store/store.js';
import { decodeListCursor, MAX_CURSOR_CHARS } from './listCursor.js';

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const STATUSES: TaskStatus[] = ['pending', 'running', 'awaiting_approval', 'completed', 'failed', 'cancelled'];

const ajv = new Ajv({ allErrors: true, strict: true });

const variables = { type: ['object', 'null'] };

export const createTaskSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['message'],
  properties: {
    message: { type: 'string', minLength: 1 },
    systemPrompt: { type: ['string', 'null'] },
    showInHistory: { type: 'boolean' },
    autoExecute: { type: 'boolean' },
    env: variables,
    secrets: variables,
  },
} as const;

export const followUpSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['message'],
  properties: { message: { type: 'string', minLength: 1 }, env: variables, secrets: variables },
} as const;

export const listTasksSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: 100 },
    offset: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    includeHidden: { type: 'boolean' },
    status: { enum: STATUSES },
    scope: { enum: ['own', 'project'] },
    cursor: { type: 'string', minLength: 1, maxLength: MAX_CURSOR_CHARS },
  },
} as const;

/** A validated GET /tasks query: `after` and its `offset` come from the cursor when one was given. */
export interface ListQuery {
  limit: number;
  offset: number;
  includeHidden: boolean;
  status?: TaskStatus;
  /** own: the tasks of the calling key or end user; project: all of the project's (keys only). */
  scope: 'own' | 'project';
  after?: TaskListPosition;
}

export const approveSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['outcome'],
  properties: {
    outcome: { enum: ['proceed_once', 'proceed_always', 'cancel'] },
    reason: { type: 'string', maxLength: 2000 },
    args: { type: 'object' },
  },
} as const;

export const inputAnswerSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['action'],
  properties: {
    action: { enum: ['accept', 'decline', 'cancel'] },
    content: { type: 'object' },
  },
} as const;

const validators = {
  approve: ajv.compile(approveSchema),
  inputAnswer: ajv.compile(inputAnswerSchema),
  createTask: ajv.compile(createTaskSchema),
  followUp: ajv.compile(followUpSchema),
  listTasks: ajv.compile(listTasksSchema),
};

/** What a parsed request body looks like to the routes: JSON or multipart fields. */
export interface RequestBody {
  kind: 'json' | 'multipart';
  fields: unknown;
  /** Multipart only: how many file parts arrived. */
  fileCount: number;
}

export function parseCreateTask(body: RequestBody): CreateTaskInput {
  const fields = normalise(body, ['showInHistory', 'autoExecute']);
  check(validators.createTask, fields);
  const input = fields as { message: string; systemPrompt?: string | null; showInHistory?: boolean; autoExecute?: boolean; env?: unknown; secrets?: unknown };
  return {
    message: input.message,
    systemPrompt: input.systemPrompt ?? null,
    showInHistory: input.showInHistory ?? true,
    autoExecute: input.autoExecute ?? true,
    ...parseVariables(input.env, input.secrets),
  };
}

export function parseFollowUp(body: RequestBody): FollowUpInput {
  const fields = normalise(body, []);
  check(validators.followUp, fields);
  const input = fields as { message: string; env?: unknown; secrets?: unknown };
  return { message: input.message, ...parseVariables(input.env, input.secrets) };
}

export function parseListQuery(query: Record<string, string | string[] | undefined>): ListQuery {
  const fields: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(query)) {
    if (Array.isArray(raw)) throw new ServiceError('VALIDATION_ERROR', `Query parameter "${key}" is given more than once`, { details: [{ path: `/${key}`, message: 'must appear once' }] });
    if (raw === undefined) continue;
    if (key === 'limit' || key === 'offset') fields[key] = /^-?\d+$/.test(raw) ? Number(raw) : raw;
    else if (key === 'includeHidden') fields[key] = booleanOf(raw);
    else fields[key] = raw;
  }
  check(validators.listTasks, fields, 'query');
  const q = fields as { limit?: number; offset?: number; includeHidden?: boolean; status?: TaskStatus; scope?: 'own' | 'project'; cursor?: string };
  if (q.cursor !== undefined && q.offset !== undefined) {
    throw new ServiceError('VALIDATION_ERROR', 'Give either "offset" or "cursor", not both: a cursor knows its place', { details: [{ path: '/offset', message: 'is not allowed with cursor' }] });
  }
  const cursor = q.cursor === undefined ? undefined : decodeListCursor(q.cursor);
  return {
    limit: q.limit ?? 50, offset: cursor?.offset ?? q.offset ?? 0, includeHidden: q.includeHidden ?? false, ...(q.status ? { status: q.status } : {}),
    scope: q.scope ?? 'own', ...(cursor ? { after: cursor.after } : {}),
  };
}

export function parseApprove(body: RequestBody): { outcome: 'proceed_once' | 'proceed_always' | 'cancel'; reason?: string; args?: Record<string, unknown> } {
  const fields = normalise(body, []);
  check(validators.approve, fields);
  return fields as { outcome: 'proceed_once' | 'proceed_always' | 'cancel'; reason?: string; args?: Record<string, unknown> };
}

export function parseInputAnswer(body: RequestBody): { action: InputAction; content?: Record<string, unknown> } {
  const fields = normalise(body, []);
  check(validators.inputAnswer, fields);
  return fields as { action: InputAction; content?: Record<string, unknown> };
}

/** Parses `after` / Last-Event-ID: a non-negative integer sequence, or undefined. */
export function parseResumeSeq(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d{1,15}$/.test(value.trim())) throw new ServiceError('VALIDATION_ERROR', `${name} must be an event sequence number`, { details: [{ path: `/${name}`, message: 'must be a non-negative integer' }] });
  return Number(value.trim());
}

// Multipart fields arrive as strings; JSON fields arrive typed. env/secrets need JSON.
function normalise(body: RequestBody, booleans: string[]): unknown {
  if (body.kind === 'json') return body.fields;
  const fields = { ...(body.fields as Record<string, unknown>) };
  if ('env' in fields || 'secrets' in fields) {
    throw new ServiceError('VALIDATION_ERROR', body.fileCount > 0
      ? 'A request cannot carry both files and env/secrets: upload the files, then send env/secrets as JSON in a follow-up'
      : 'Send env and secrets as application/json', { details: [{ path: 'env' in fields ? '/env' : '/secrets', message: 'not accepted in multipart/form-data' }] });
  }
  for (const [key, value] of Object.entries(fields)) {
    if (Array.isArray(value)) throw new ServiceError('VALIDATION_ERROR', `Field "${key}" is given more than once`, { details: [{ path: `/${key}`, message: 'must appear once' }] });
    if (booleans.includes(key) && typeof value === 'string') fields[key] = booleanOf(value);
  }
  return fields;
}

// In any case: Python's str(True) is "True", and clients of the hosted API send it.
function booleanOf(value: string): boolean | string {
  const lower = value.toLowerCase();
  if (lower === 'true' || lower === '1') return true;
  if (lower === 'false' || lower === '0') return false;
  return value;
}

function parseVariables(env: unknown, secrets: unknown): { env: Record<string, string> | null; secrets: Record<string, string> | null } {
  const problems: FieldProblem[] = [];
  for (const [name, value] of [['env', env], ['secrets', secrets]] as const) {
    for (const [key, item] of Object.entries((value ?? {}) as Record<string, unknown>)) {
      if (!ENV_KEY.test(key)) problems.push({ path: `/${name}/${escapePointer(key)}`, message: 'key must match ^[A-Za-z_][A-Za-z0-9_]*$' });
      else if (typeof item !== 'string') problems.push({ path: `/${name}/${escapePointer(key)}`, message: 'value must be a string' });
    }
  }
  // The message names keys, never values: a secret's value must not come back in an error. The seed
  // API answers VALIDATION_ERROR here (INVALID_ENV is for POST /auth/token only).
  if (problems.length) throw new ServiceError('VALIDATION_ERROR', 'Invalid env or secrets: keys must match ^[A-Za-z_][A-Za-z0-9_]*$ and values must be strings', { details: problems });
  return { env: (env ?? null) as Record<string, string> | null, secrets: (secrets ?? null) as Record<string, string> | null };
}

function check(validate: ValidateFunction, value: unknown, where: 'body' | 'query' = 'body'): void {
  if (validate(value)) return;
  const details = (validate.errors ?? []).map(problemOf);
  const first = details[0]!;
  throw new ServiceError('VALIDATION_ERROR', `Invalid request ${where}: ${first.path || '/'} ${first.message}`, { details });
}

function problemOf(error: ErrorObject): FieldProblem {
  if (error.keyword === 'additionalProperties') {
    const extra = String((error.params as { additionalProperty: string }).additionalProperty);
    return { path: `${error.instancePath}/${escapePointer(extra)}`, message: 'is not a known field' };
  }
  if (error.keyword === 'required') {
    const missing = String((error.params as { missingProperty: string }).missingProperty);
    return { path: `${error.instancePath}/${escapePointer(missing)}`, message: 'is required' };
  }
  if (error.keyword === 'enum') return { path: error.instancePath, message: `must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.join(', ')}` };
  return { path: error.instancePath, message: error.message ?? 'is invalid' };
}

function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}
