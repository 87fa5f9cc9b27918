import { expect } from 'chai';
import { createApiKey } from '../../src/runtime/security/apiKeys.js';
import { startTestAirlock, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';

const CANARY = 'tenant-a-canary-1234';

describe('One tenant\'s secrets and the log', function () {
  this.timeout(60_000);
  let airlock: TestAirlock;

  before(async () => {
    airlock = await startTestAirlock({ config: { projects: { other: {} } } });
  });
  after(async () => {
    await airlock?.stop();
  });

  it('cannot make the log unparseable, rename fields or hide key ids in other tenants\' lines; its own lines are scrubbed', async () => {
    const hostile = { QUOTE: '"', NEWLINE: '\n', STATUS: 'status', KEY: 'key_', BRACE: '"}', LONG: CANARY };
    const a = await airlock.api('/tasks', { method: 'POST', json: { message: `/fail it broke on ${CANARY}`, secrets: hostile } });
    expect(a.status, a.text).to.equal(201);
    await waitForStatus(airlock, a.body.data.id, ['failed']);

    // Tenant B, in another project, meanwhile.
    const otherKey = (await createApiKey(airlock.store, { projectId: 'other' })).key;
    const b = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply fine' }, key: otherKey });
    expect(b.status, b.text).to.equal(201);
    const bTask = await waitFor(async () => {
      const { body } = await airlock.api(`/tasks/${b.body.data.id}`, { key: otherKey });
      return body.data.status === 'completed' ? body.data : undefined;
    }, 'tenant B\'s task');
    const bKeyId = bTask.apiKeyId;
    expect(bKeyId).to.match(/^key_/);

    const entries = await waitFor(() => {
      const parsed = airlock.logs.map((line) => JSON.parse(line));
      return parsed.some((entry) => entry.apiKeyId === bKeyId && entry.msg === 'request') ? parsed : undefined;
    }, 'tenant B\'s request lines');
    const bRequests = entries.filter((entry) => entry.msg === 'request' && entry.apiKeyId === bKeyId);
    for (const line of bRequests) {
      expect(line.status).to.be.a('number');
      expect(line.projectId).to.equal('other');
    }
    // A's own lines carry no value of its secrets (those long enough to scrub).
    const aLines = entries.filter((entry) => entry.taskId === a.body.data.id);
    expect(aLines.some((entry) => entry.event === 'task_failed')).to.equal(true);
    expect(airlock.logs.join('\n')).not.to.include(CANARY);
  });

  it('still scrubs a value too short for the log from the task\'s events and responses', async () => {
    const created = await airlock.api('/tasks', { method: 'POST', json: { message: '/reply the pin is 4711', secrets: { PIN: '4711' } } });
    const task = await waitForStatus(airlock, created.body.data.id, ['completed']);
    expect(task.output.content).to.equal('the pin is [secret:PIN]');
    const history = await airlock.api(`/tasks/${created.body.data.id}/history`);
    expect(history.text).to.include('[secret:PIN]').and.not.include('4711');
  });
});
