import { expect } from 'chai';
import { parseCreateTask, parseFollowUp, parseListQuery, parseResumeSeq } from '../../src/api/requests.js';
import type { RequestBody } from '../../src/api/requests.js';
import { ServiceError } from '../../src/errors.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import type { FieldProblem } from '../../src/errors.js';

const json = (fields: unknown): RequestBody => ({ kind: 'json', fields, fileCount: 0 });
const multipart = (fields: Record<string, unknown>, fileCount = 0): RequestBody => ({ kind: 'multipart', fields, fileCount });

function serviceError(run: () => unknown): ServiceError {
  try {
    run();
  } catch (err) {
    if (err instanceof ServiceError) return err;
    throw err;
  }
  throw new Error('expected a ServiceError');
}

const details = (err: ServiceError): FieldProblem[] => err.details as FieldProblem[];

describe('parseCreateTask', () => {
  it('fills in the defaults for a message alone', () => {
    expect(parseCreateTask(json({ message: 'hi' }))).to.deep.equal({
      message: 'hi', systemPrompt: null, showInHistory: true, autoExecute: true, env: null, secrets: null,
    });
  });

  it('keeps every field given in JSON', () => {
    const input = parseCreateTask(json({
      message: 'hi', systemPrompt: 'be brief', showInHistory: false, autoExecute: false, env: { A: '1' }, secrets: { B: '2' },
    }));
    expect(input).to.deep.equal({ message: 'hi', systemPrompt: 'be brief', showInHistory: false, autoExecute: false, env: { A: '1' }, secrets: { B: '2' } });
  });

  it('reads multipart "true", "false", "1" and "0" as booleans', () => {
    expect(parseCreateTask(multipart({ message: 'm', showInHistory: 'true', autoExecute: 'false' }))).to.include({ showInHistory: true, autoExecute: false });
    expect(parseCreateTask(multipart({ message: 'm', showInHistory: '0', autoExecute: '1' }))).to.include({ showInHistory: false, autoExecute: true });
  });

  // Python's str(True) is "True": clients of the hosted API send booleans in any case.
  it('reads "true" and "false" in any case', () => {
    for (const [value, expected] of [['True', true], ['TRUE', true], ['tRuE', true], ['False', false], ['FALSE', false], ['fAlSe', false]] as const) {
      expect(parseCreateTask(multipart({ message: 'm', showInHistory: value, autoExecute: value })), value).to.include({ showInHistory: expected, autoExecute: expected });
    }
    expect(parseListQuery({ includeHidden: 'True' })).to.include({ includeHidden: true });
  });

  it('refuses other strings for a multipart boolean', () => {
    for (const value of ['yes', '', 'on', ' true', 'true ', '01', 'truee']) {
      const err = serviceError(() => parseCreateTask(multipart({ message: 'm', autoExecute: value })));
      expect(err.code, value).to.equal('VALIDATION_ERROR');
      expect(details(err).map((d) => d.path), value).to.include('/autoExecute');
    }
  });

  it('refuses a string boolean in JSON', () => {
    const err = serviceError(() => parseCreateTask(json({ message: 'm', showInHistory: 'true' })));
    expect(err.code).to.equal('VALIDATION_ERROR');
    expect(details(err)[0]!.path).to.equal('/showInHistory');
  });

  it('refuses env or secrets in multipart, asking for JSON', () => {
    for (const field of ['env', 'secrets']) {
      const err = serviceError(() => parseCreateTask(multipart({ message: 'm', [field]: '{"A":"1"}' })));
      expect(err.code, field).to.equal('VALIDATION_ERROR');
      expect(err.message, field).to.match(/application\/json/);
      expect(details(err)[0]!.path, field).to.equal(`/${field}`);
    }
  });

  it('says files and env/secrets cannot be mixed when a multipart request carries both', () => {
    const err = serviceError(() => parseCreateTask(multipart({ message: 'm', secrets: '{"A":"1"}' }, 2)));
    expect(err.code).to.equal('VALIDATION_ERROR');
    expect(err.message).to.include('files').and.to.include('env/secrets');
  });

  it('lists every bad key of env and secrets in a VALIDATION_ERROR, and never a value', () => {
    const err = serviceError(() => parseCreateTask(json({
      message: 'm',
      env: { GOOD: 'fine', '1BAD': 'env-value-1', 'has-dash': 'env-value-2' },
      secrets: { NOT_STRING: 12345, 'sp ace': 'secret-value-3', OK: 'secret-value-4' },
    })));
    expect(err.code).to.equal('VALIDATION_ERROR');
    expect(details(err).map((d) => d.path)).to.have.members(['/env/1BAD', '/env/has-dash', '/secrets/NOT_STRING', '/secrets/sp ace']);
    const shown = JSON.stringify({ message: err.message, details: err.details });
    for (const value of ['env-value-1', 'env-value-2', '12345', 'secret-value-3', 'secret-value-4', 'fine']) expect(shown).not.to.include(value);
  });

  it('escapes "/" and "~" in a bad key as a JSON pointer', () => {
    const err = serviceError(() => parseCreateTask(json({ message: 'm', env: { 'a/b~c': 'v' } })));
    expect(details(err).map((d) => d.path)).to.deep.equal(['/env/a~1b~0c']);
  });

  it('answers VALIDATION_ERROR with the /field path for an unknown field', () => {
    const err = serviceError(() => parseCreateTask(json({ message: 'm', colour: 'blue' })));
    expect(err.code).to.equal('VALIDATION_ERROR');
    expect(err.status).to.equal(400);
    expect(details(err)).to.deep.equal([{ path: '/colour', message: 'is not a known field' }]);
  });

  it('answers VALIDATION_ERROR for a missing or empty message', () => {
    expect(details(serviceError(() => parseCreateTask(json({}))))).to.deep.include({ path: '/message', message: 'is required' });
    expect(details(serviceError(() => parseCreateTask(json({ message: '' })))).map((d) => d.path)).to.include('/message');
  });

  it('refuses a multipart field given twice', () => {
    const err = serviceError(() => parseCreateTask(multipart({ message: ['a', 'b'] })));
    expect(err.code).to.equal('VALIDATION_ERROR');
    expect(details(err)[0]!.path).to.equal('/message');
  });
});

describe('parseFollowUp', () => {
  it('takes a message with optional env and secrets, null when absent', () => {
    expect(parseFollowUp(json({ message: 'more' }))).to.deep.equal({ message: 'more', env: null, secrets: null });
    expect(parseFollowUp(json({ message: 'more', secrets: { K: 'v' } }))).to.deep.equal({ message: 'more', env: null, secrets: { K: 'v' } });
  });

  it('refuses the create-only fields', () => {
    const err = serviceError(() => parseFollowUp(json({ message: 'more', autoExecute: true })));
    expect(details(err)).to.deep.equal([{ path: '/autoExecute', message: 'is not a known field' }]);
  });
});

describe('parseListQuery', () => {
  it('defaults to limit 50, offset 0, hidden tasks excluded, no status filter, the caller\'s own tasks', () => {
    expect(parseListQuery({})).to.deep.equal({ limit: 50, offset: 0, includeHidden: false, scope: 'own' });
  });

  it('reads numbers, booleans and a status from query strings', () => {
    expect(parseListQuery({ limit: '100', offset: '20', includeHidden: 'true', status: 'failed', scope: 'project' })).to.deep.equal({ limit: 100, offset: 20, includeHidden: true, status: 'failed', scope: 'project' });
    expect(parseListQuery({ limit: '1', includeHidden: '0' })).to.include({ limit: 1, includeHidden: false });
  });

  it('refuses a limit outside 1..100, a negative offset and non-integers', () => {
    for (const query of [{ limit: '0' }, { limit: '101' }, { limit: '1.5' }, { limit: 'ten' }, { offset: '-1' }]) {
      const err = serviceError(() => parseListQuery(query));
      expect(err.code, JSON.stringify(query)).to.equal('VALIDATION_ERROR');
      expect(details(err)[0]!.path, JSON.stringify(query)).to.equal(`/${Object.keys(query)[0]}`);
    }
  });

  // Regression: offset=99999999999999999999 passed validation as 1e20 and the store failed with
  // "datatype mismatch", a 500 for what is the caller's input.
  it('never passes on an offset the store cannot page with', async () => {
    let query: ReturnType<typeof parseListQuery>;
    try {
      query = parseListQuery({ offset: '99999999999999999999' });
    } catch (err) {
      expect(err).to.be.instanceOf(ServiceError);
      expect((err as ServiceError).code).to.equal('VALIDATION_ERROR');
      return;
    }
    const store = new SqliteStore(':memory:');
    try {
      const page = await store.listTasks({ projectId: 'default', ...query });
      expect(page.tasks).to.deep.equal([]);
    } finally {
      await store.close();
    }
  });

  it('refuses an unknown status, an unknown parameter and a repeated one', () => {
    expect(serviceError(() => parseListQuery({ status: 'done' })).code).to.equal('VALIDATION_ERROR');
    expect(details(serviceError(() => parseListQuery({ sort: 'asc' })))).to.deep.equal([{ path: '/sort', message: 'is not a known field' }]);
    expect(details(serviceError(() => parseListQuery({ limit: ['1', '2'] })))[0]!.path).to.equal('/limit');
  });
});

describe('parseResumeSeq', () => {
  it('is undefined when the value is absent or empty', () => {
    expect(parseResumeSeq(undefined, 'after')).to.equal(undefined);
    expect(parseResumeSeq('', 'after')).to.equal(undefined);
  });

  it('reads a non-negative integer, surrounding spaces allowed', () => {
    expect(parseResumeSeq('0', 'after')).to.equal(0);
    expect(parseResumeSeq('42', 'after')).to.equal(42);
    expect(parseResumeSeq(' 7 ', 'Last-Event-ID')).to.equal(7);
  });

  it('refuses anything else with VALIDATION_ERROR naming the parameter', () => {
    for (const value of ['-1', '1.5', 'abc', '1e3', '1234567890123456']) {
      const err = serviceError(() => parseResumeSeq(value, 'Last-Event-ID'));
      expect(err.code, value).to.equal('VALIDATION_ERROR');
      expect(err.message, value).to.include('Last-Event-ID');
      expect(details(err), value).to.deep.equal([{ path: '/Last-Event-ID', message: 'must be a non-negative integer' }]);
    }
  });
});
