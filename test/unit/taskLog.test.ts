import { expect } from 'chai';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Scrubber } from '../../src/runtime/security/scrubber.js';
import { MIN_LOGGED_SECRET_CHARS, taskLog } from '../../src/runtime/events/taskLog.js';

/** A pino logger writing synchronously into `lines`. */
function memoryLogger(lines: string[]) {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return pino({ level: 'debug' }, destination);
}

describe('taskLog', () => {
  const SECRET = 'tenant-a-"secret"\nvalue';

  it('scrubs the task\'s secrets from the fields, errors and message of its own lines, and the lines stay JSON', () => {
    const lines: string[] = [];
    const logger = memoryLogger(lines);
    const log = taskLog(logger, new Scrubber({ TOKEN: SECRET }));
    log.warn({ taskId: 't1', reason: `it said ${SECRET}`, nested: { deep: [SECRET] } }, `message with ${SECRET}`);
    log.error({ err: new Error(`failed on ${SECRET}`) }, 'boom');
    expect(lines).to.have.length(2);
    const [first, second] = lines.map((line) => JSON.parse(line));
    expect(first).to.include({ taskId: 't1', reason: 'it said [secret:TOKEN]', msg: 'message with [secret:TOKEN]' });
    expect(first.nested).to.deep.equal({ deep: ['[secret:TOKEN]'] });
    expect(second.err.message).to.equal('failed on [secret:TOKEN]');
    expect(second.err.stack).to.include('failed on [secret:TOKEN]');
    expect(second.err.type).to.equal('Error');
    expect(lines.join('\n')).not.to.include('tenant-a-');
  });

  it('leaves every other line alone, whatever the task\'s secrets are', () => {
    const lines: string[] = [];
    const logger = memoryLogger(lines);
    taskLog(logger, new Scrubber({ Q: '"', NL: '\n', STATUS: 'status', KEY: 'key_', LONG: 'a-long-secret' }));
    logger.info({ status: 200, apiKeyId: 'key_abc', note: 'a-long-secret "quoted"\nnext' }, 'request');
    expect(JSON.parse(lines[0]!)).to.include({ status: 200, apiKeyId: 'key_abc', note: 'a-long-secret "quoted"\nnext', msg: 'request' });
  });

  it(`does not scrub values shorter than ${MIN_LOGGED_SECRET_CHARS} characters from log lines`, () => {
    const lines: string[] = [];
    const log = taskLog(memoryLogger(lines), new Scrubber({ SHORT: 'abc', LONG: 'abcdef' }));
    log.info({ value: 'abc abcdef' }, 'status abc');
    expect(JSON.parse(lines[0]!)).to.include({ value: 'abc [secret:LONG]', msg: 'status abc' });
  });

  it('is the logger itself when the task has no secret worth scrubbing', () => {
    const logger = pino({ level: 'silent' });
    expect(taskLog(logger, Scrubber.NONE)).to.equal(logger);
    expect(taskLog(logger, new Scrubber({ PIN: '1234' }))).to.equal(logger);
  });
});
