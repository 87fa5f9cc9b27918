import { expect } from 'chai';
import { performance } from 'node:perf_hooks';
import { echoStdioCommand } from '../../fixtures/mcp/echoServer.js';
import { floodStdioCommand } from '../../fixtures/mcp/floodServer.js';
import type { FloodRequestsReport } from '../../fixtures/mcp/floodServer.js';
import { SERVER_REQUEST_BURST, SERVER_REQUESTS_PER_SECOND } from '../../src/mcp/serverRequests.js';
import { PROGRESS_INTERVAL_MS } from '../../src/runtime/tools/progressCoalescer.js';
import { SAMPLING_TOOL_NAME } from '../../src/runtime/approvals/sampling.js';
import { waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { runTask, script, startWithServers } from '../support/mcpHarness.js';
import { openSse, readSse } from '../support/sse.js';

// A hostile MCP server floods its client with progress notifications during one call. Airlock
// stores a bounded number of events for it (the latest progress wins) and keeps answering others.
describe('a server that floods progress notifications', function () {
  this.timeout(120_000);
  const COUNT = 20_000;

  it('stores a few coalesced events, the last progress last, and /healthz answers meanwhile', async () => {
    const command = echoStdioCommand();
    const airlock = await startWithServers({ flood: { type: 'stdio', command: command.command, args: command.args } }, { project: { builtinTools: false } });
    const health: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const start = performance.now();
        const res = await fetch(`${airlock.url}/healthz`);
        await res.arrayBuffer();
        health.push(performance.now() - start);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      const started = performance.now();
      const { task, events } = await runTask(airlock, { message: script(['flood__flood_progress', { count: COUNT }]) }, ['completed', 'failed'], 90_000);
      expect(task.status, JSON.stringify(task.error)).to.equal('completed');
      expect(task.output.toolCalls[0].output).to.equal('flooded');
      const progress = events.filter((e) => e.event === 'tool_progress');
      const result = events.find((e) => e.event === 'tool_result')!;
      // At most one event per interval of the task's life (which holds the call's), and the last.
      const bound = Math.ceil((performance.now() - started) / PROGRESS_INTERVAL_MS) + 1;
      expect(progress.length).to.be.at.least(1).and.at.most(Math.min(bound, 400));
      expect(progress.at(-1)!.data).to.include({ progress: COUNT, total: COUNT });
      const values = progress.map((e) => e.data.progress as number);
      expect(values).to.deep.equal([...values].sort((a, b) => a - b));
      expect(events.findIndex((e) => e.event === 'tool_progress' && e.data.progress === COUNT)).to.be.lessThan(events.indexOf(result));
    } finally {
      polling = false;
      await poller;
      await airlock.stop();
    }
    expect(health.length).to.be.at.least(2);
    // Generous: the machine is shared. Without coalescing, each notification is a store write.
    expect(Math.max(...health)).to.be.below(2_000);
  });
});

// The same server, flooding with every other kind of message it may send its client while it
// serves a call: notifications Airlock makes no event of, and requests that need an answer.
describe('a server that floods other message kinds (flood fixture over stdio)', function () {
  this.timeout(120_000);
  let airlock: TestAirlock;

  before(async () => {
    const command = floodStdioCommand();
    airlock = await startWithServers(
      { flood: { type: 'stdio', command: command.command, args: command.args } },
      { project: { builtinTools: false, samplingPolicies: [{ decision: 'allow' }] } },
    );
  });
  after(async () => airlock?.stop());

  function report(task: any): FloodRequestsReport {
    expect(task.status, JSON.stringify(task.error)).to.equal('completed');
    return JSON.parse(task.output.toolCalls[0].output) as FloodRequestsReport;
  }

  it('makes no event of 100,000 logging, list_changed and resources/updated notifications; /healthz and another task answer meanwhile', async () => {
    const created = await airlock.api('/tasks', { method: 'POST', json: { message: script(['flood__flood_notifications', { count: 20_000 }]) } });
    expect(created.status, created.text).to.equal(201);
    const id = created.body.data.id;
    const stream = await openSse(`${airlock.url}/api/v1/tasks/${id}/stream`, { authorization: `Bearer ${airlock.key}` });
    try {
      await stream.waitFor((frame) => frame.event === 'tool_call' && frame.data.status === 'executing', 30_000);
      // While the server floods (most of the call's time), Airlock answers others: no clock, an order.
      const health = await airlock.api('/healthz');
      const other = await runTask(airlock, { message: '/reply still here' }, ['completed', 'failed'], 60_000);
      const flooding = !stream.frames.some((frame) => frame.event === 'tool_result');
      expect(health.status).to.equal(200);
      expect(other.task.status).to.equal('completed');
      expect(flooding, 'the flood was still going on when both had answered').to.equal(true);
      await stream.waitFor((frame) => frame.event === 'done', 90_000);
    } finally {
      stream.close();
    }
    const task = await waitForStatus(airlock, id, ['completed', 'failed']);
    const { frames: events } = await readSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
    expect(task.status, JSON.stringify(task.error)).to.equal('completed');
    expect(task.output.toolCalls[0].output).to.equal('sent 100000 notifications');
    // The events of a task with one call, nothing per notification.
    expect(events.map((e) => e.event).filter((type) => !['status', 'content'].includes(type))).to.deep.equal(['tool_call', 'tool_result', 'done']);
    expect(events.length).to.be.at.most(12);
  });

  it(`sampling requests one after another: ${SERVER_REQUEST_BURST} answered at once, then ${SERVER_REQUESTS_PER_SECOND} a second; those withdrawn while they wait never reach the task`, async () => {
    const count = 40;
    const started = performance.now();
    const { task, events } = await runTask(airlock, { message: script(['flood__flood_requests', { kind: 'sample', count, timeoutMs: 150 }]) }, ['completed', 'failed'], 90_000);
    const bound = SERVER_REQUEST_BURST + Math.ceil(((performance.now() - started) / 1000) * SERVER_REQUESTS_PER_SECOND) + 1;
    const { answered, failed } = report(task);
    expect(answered).to.be.at.least(SERVER_REQUEST_BURST).and.at.most(Math.min(bound, count - 1));
    expect(failed, 'the rest waited for their turn until the server gave them up').to.deep.equal({ timeout: count - answered });
    // Each answered request is one sampling call (the model answered it) with its result; nothing of the others.
    const sampling = events.filter((e) => e.event === 'tool_call' && e.data.toolName === SAMPLING_TOOL_NAME);
    expect(sampling).to.have.length(answered);
    expect(events.filter((e) => e.event === 'tool_result')).to.have.length(answered + 1);
  });

  it('elicitation requests one after another, each withdrawn: only the admitted ones become inputs', async () => {
    const count = 30;
    const started = performance.now();
    const { task, events } = await runTask(airlock, { message: script(['flood__flood_requests', { kind: 'elicit', count, timeoutMs: 100 }]) }, ['completed', 'failed'], 90_000);
    const bound = SERVER_REQUEST_BURST + Math.ceil(((performance.now() - started) / 1000) * SERVER_REQUESTS_PER_SECOND) + 1;
    const { answered, failed } = report(task);
    expect([answered, failed]).to.deep.equal([0, { timeout: count }]);
    const inputs = events.filter((e) => e.event === 'input_required');
    expect(inputs.length).to.be.at.least(SERVER_REQUEST_BURST).and.at.most(Math.min(bound, count - 1));
    expect(events.filter((e) => e.event === 'input_resolved').map((e) => e.data.action)).to.deep.equal(inputs.map(() => 'cancel'));
  });
});
