import { expect } from 'chai';
import { runTask, startWithServers } from '../support/mcpHarness.js';
import { waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { readSse } from '../support/sse.js';
import type { SseFrame } from '../support/sse.js';

// The hosted API's `status` events carry `connecting` (the model and MCP servers connect),
// `processing` (the model works) and `retrying`; Airlock sends them beside its task statuses.
describe('status events: the hosted API\'s transient states', () => {
  let airlock: TestAirlock;

  before(async () => {
    // A server whose template has no value: it is reported (a `running` notice) while the run connects.
    airlock = await startWithServers({ crm: { type: 'http', url: 'http://127.0.0.1:9/mcp', headers: { 'X-Key': '{{mcp.CRM_TOKEN}}' } } });
  });
  after(async () => airlock.stop());

  const statusesOf = (events: SseFrame[]) => events.filter((e) => e.event === 'status').map((e) => e.data.status as string);
  const indexOf = (events: SseFrame[], predicate: (e: SseFrame) => boolean) => {
    const index = events.findIndex(predicate);
    expect(index, 'a matching event').to.be.at.least(0);
    return index;
  };

  it('sends connecting while the run connects its servers, then processing before every model turn', async () => {
    const { task, events } = await runTask(airlock, { message: '/call list_directory {"path":"."}\n/reply listed' });
    expect(task.status).to.equal('completed');
    expect(statusesOf(events)).to.deep.equal(['running', 'connecting', 'running', 'processing', 'processing', 'completed']);
    const connecting = indexOf(events, (e) => e.data.status === 'connecting');
    const notice = indexOf(events, (e) => e.event === 'status' && /MCP server "crm" skipped/.test(e.data.message ?? ''));
    const [first, second] = events.flatMap((e, i) => (e.data.status === 'processing' ? [i] : []));
    const call = indexOf(events, (e) => e.event === 'tool_call');
    const result = indexOf(events, (e) => e.event === 'tool_result');
    const answer = indexOf(events, (e) => e.event === 'content');
    expect(connecting).to.be.below(notice);
    expect(notice).to.be.below(first!);
    expect(first).to.be.below(call);
    expect(result).to.be.below(second!);
    expect(second).to.be.below(answer);
    // Transient states never become the task's own status.
    expect(events.filter((e) => e.data.status === 'connecting' || e.data.status === 'processing').every((e) => Object.keys(e.data).length === 1)).to.equal(true);
  });

  it('sends connecting and processing again on a follow-up run', async () => {
    const { task, events } = await runTask(airlock, { message: '/reply first' });
    await airlock.api(`/tasks/${task.id}/messages`, { method: 'POST', json: { message: '/reply second' } });
    await waitForStatus(airlock, task.id, ['completed']);
    const followUp = await readSse(`${airlock.url}/api/v1/tasks/${task.id}/stream?after=${events.at(-1)!.id}`, { authorization: `Bearer ${airlock.key}` });
    expect(statusesOf(followUp.frames)).to.deep.equal(['running', 'connecting', 'running', 'processing', 'completed']);
  });
});
