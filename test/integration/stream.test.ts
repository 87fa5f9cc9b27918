import { expect } from 'chai';
import { connect } from 'node:net';
import { startTestAirlock, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { ScriptedModelClient } from '../../src/model/scriptedModelClient.js';
import { FakeToolRouter, ManualModel } from '../support/fakes.js';
import { openSse, readSse } from '../support/sse.js';
import type { SseClient } from '../support/sse.js';

describe('GET /tasks/:id/stream', () => {
  let airlock: TestAirlock;
  let manual: ManualModel;
  const auth = () => ({ authorization: `Bearer ${airlock.key}` });
  const streamUrl = (id: string, query = '') => `${airlock.url}/api/v1/tasks/${id}/stream${query}`;

  before(async () => {
    manual = new ManualModel();
    airlock = await startTestAirlock({
      env: { AIRLOCK_HEARTBEAT_MS: '100' },
      // Messages starting with "manual" go to the hand-driven model; the rest to the scripted one.
      overrides: { modelFor: () => ({ description: 'switch', stream: (req) => (JSON.stringify(req.messages).includes('manual') ? manual.stream(req) : scripted.stream(req)) }) },
    });
  });
  after(async () => airlock.stop());

  const scripted = new ScriptedModelClient();

  async function finishedTask(message: string): Promise<string> {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message } });
    await waitForStatus(airlock, res.body.data.id, ['completed']);
    return res.body.data.id;
  }

  it('replays history in the exact wire format, then history_done, then ends for a finished task', async () => {
    const id = await finishedTask('/think hmm\n/reply Hello, "quoted"\nworld');
    const client = await readSse(streamUrl(id), auth());
    expect(client.status).to.equal(200);
    expect(client.headers['content-type']).to.match(/^text\/event-stream/);
    expect(client.frames.map((f) => f.event)).to.deep.equal(['history_message', 'history_message', 'history_done']);
    for (const frame of client.frames) expect(frame.raw).to.match(/^event: [a-z_]+\ndata: [^\n]+\nid: \d+$/);
    const [user, assistant, done] = client.frames;
    expect(user!.data).to.include({ role: 'user' });
    expect(user!.data).to.have.keys('id', 'role', 'content', 'createdAt');
    expect(assistant!.data).to.include({ role: 'assistant', content: 'Hello, "quoted"' });
    expect(assistant!.data.thoughts).to.deep.equal([{ subject: 'Thinking', description: 'hmm' }]);
    expect(done!.data).to.deep.equal({ messageCount: 2, isStreaming: false });
  });

  it('streams a live task: history, history_done, catch-up of the partial turn, live events, then ends after done', async () => {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'manual one' } });
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['running']);
    manual.push({ type: 'text_delta', text: 'Hel' }, { type: 'thought', subject: 'Plan', description: 'say hello' }, { type: 'text_delta', text: 'lo ' });
    await waitFor(async () => (await airlock.api(`/tasks/${id}`)).body.data.output?.content === 'Hello ', 'the partial content');

    const client = await openSse(streamUrl(id), auth());
    await client.waitFor((f) => f.event === 'thought');
    const head = client.frames.map((f) => [f.event, f.data]);
    expect(head).to.deep.equal([
      ['history_message', head[0]![1]],
      ['history_done', { messageCount: 1, isStreaming: true }],
      ['content', { text: 'Hello ', isPartial: true }],
      ['thought', { subject: 'Plan', description: 'say hello' }],
    ]);
    manual.push({ type: 'text_delta', text: 'world' });
    manual.end('Hello world');
    await client.ended;
    const rest = client.frames.slice(4).map((f) => f.event);
    expect(rest).to.deep.equal(['content', 'content', 'status', 'done']);
    expect(client.frames.at(-1)!.data).to.deep.equal({ finalResponse: 'Hello world' });
    const snapshotId = client.frames[0]!.id;
    expect(client.frames.slice(0, 4).every((f) => f.id === snapshotId)).to.equal(true);
    expect(client.frames.slice(4).map((f) => f.id)).to.deep.equal([snapshotId + 1, snapshotId + 2, snapshotId + 3, snapshotId + 4]);
  });

  it('sends a finished text of the turn in progress whole (isPartial false) in the catch-up', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const tools = new FakeToolRouter({ wait: { handler: async () => { await released; return { content: [{ type: 'text', text: 'waited' }], isError: false }; } } });
    const model = new ManualModel();
    const local = await startTestAirlock({ overrides: { toolRouter: tools, modelFor: () => model } });
    try {
      const res = await local.api('/tasks', { method: 'POST', json: { message: 'go' } });
      const id = res.body.data.id;
      model.push({ type: 'text_delta', text: 'Let me ' }, { type: 'text_delta', text: 'wait.' });
      model.push({ type: 'turn_end', content: [{ type: 'text', text: 'Let me wait.' }, { type: 'tool_use', id: 'toolu_w', name: 'wait', input: {} }], stopReason: 'tool_use', usage: { inputTokens: 1, outputTokens: 1 } });
      await waitFor(() => tools.calls.length > 0, 'the tool call');
      const client = await openSse(`${local.url}/api/v1/tasks/${id}/stream`, { authorization: `Bearer ${local.key}` });
      await client.waitFor((f) => f.event === 'tool_call');
      expect(client.frames.map((f) => [f.event, f.data])).to.deep.equal([
        ['history_message', client.frames[0]!.data],
        ['history_done', { messageCount: 1, isStreaming: true }],
        ['content', { text: 'Let me wait.', isPartial: false }],
        ['tool_call', { callId: 'toolu_w', toolName: 'wait', status: 'executing', args: {} }],
      ]);
      release();
      await client.waitFor((f) => f.event === 'tool_result');
      model.end('Done.');
      await client.ended;
      expect(client.frames.at(-1)!.data).to.deep.equal({ finalResponse: 'Let me wait.\n\nDone.' });
    } finally {
      release();
      await local.stop();
    }
  });

  it('resumes with Last-Event-ID or ?after= across the stored/live seam with nothing lost or repeated', async () => {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'manual two' } });
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['running']);
    for (let i = 0; i < 50; i++) manual.push({ type: 'text_delta', text: `${i} ` });
    await waitFor(async () => (await airlock.api(`/tasks/${id}`)).body.data.output?.content.includes('49 '), 'fifty deltas');

    const byHeader = await openSse(streamUrl(id), { ...auth(), 'last-event-id': '10' });
    const byQuery = await openSse(streamUrl(id, '?after=25'), auth());
    // Events keep coming while the resumed streams read the stored ones.
    for (let i = 50; i < 100; i++) manual.push({ type: 'text_delta', text: `${i} ` });
    manual.end('the end');
    await Promise.all([byHeader.ended, byQuery.ended]);

    const all = await readSse(streamUrl(id, '?after=0'), auth());
    const last = all.frames.at(-1)!;
    expect(last.event).to.equal('done');
    expect(all.frames.map((f) => f.id)).to.deep.equal(range(1, last.id));
    expect(byHeader.frames.map((f) => f.id)).to.deep.equal(range(11, last.id));
    expect(byQuery.frames.map((f) => f.id)).to.deep.equal(range(26, last.id));
    expect(byHeader.frames.some((f) => f.event.startsWith('history'))).to.equal(false);
    const text = all.frames.filter((f) => f.event === 'content' && f.data.isPartial).map((f) => f.data.text).join('');
    expect(text).to.equal(range(0, 99).map((i) => `${i} `).join(''));
  });

  it('takes Last-Event-ID over ?after= when a request gives both, as documented', async () => {
    const id = await finishedTask('/reply x');
    const all = await readSse(streamUrl(id, '?after=0'), auth());
    const lastId = all.frames.at(-1)!.id;
    expect(lastId).to.be.at.least(3);
    const both = await readSse(streamUrl(id, '?after=1'), { ...auth(), 'last-event-id': String(lastId - 1) });
    expect(both.frames.map((f) => f.id)).to.deep.equal([lastId]);
    const reversed = await readSse(streamUrl(id, `?after=${lastId - 1}`), { ...auth(), 'last-event-id': '1' });
    expect(reversed.frames.map((f) => f.id)).to.deep.equal(range(2, lastId));
  });

  it('ends a resumed stream of a finished task after the stored events, and sends nothing past the end', async () => {
    const id = await finishedTask('/reply x');
    const all = await readSse(streamUrl(id, '?after=0'), auth());
    const lastId = all.frames.at(-1)!.id;
    const none = await readSse(streamUrl(id, `?after=${lastId}`), auth());
    expect(none.frames).to.deep.equal([]);
  });

  it('answers a bad resume id or an unknown task with the JSON envelope before streaming', async () => {
    const id = await finishedTask('/reply x');
    const bad = await openSse(streamUrl(id), { ...auth(), 'last-event-id': 'abc' });
    await bad.ended;
    expect(bad.status).to.equal(400);
    expect(JSON.parse(bad.body).error.code).to.equal('VALIDATION_ERROR');
    const missing = await openSse(streamUrl('00000000-0000-4000-8000-000000000000'), auth());
    await missing.ended;
    expect(missing.status).to.equal(404);
    expect(JSON.parse(missing.body).error.code).to.equal('NOT_FOUND');
  });

  it('sends :heartbeat comments at the configured interval', async () => {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'manual heartbeat' } });
    const client = await openSse(streamUrl(res.body.data.id), auth());
    await waitFor(() => client.comments.length >= 2, 'two heartbeats', 2_000);
    expect(client.comments[0]).to.equal(':heartbeat');
    manual.end('bye');
    await client.ended;
  });

  it('does not affect the task when a client disconnects', async () => {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'manual disconnect' } });
    const id = res.body.data.id;
    const client = await openSse(streamUrl(id), auth());
    await client.waitFor((f) => f.event === 'history_done');
    client.close();
    manual.push({ type: 'text_delta', text: 'still ' });
    manual.end('still going');
    const task = await waitForStatus(airlock, id, ['completed']);
    expect(task.output.content).to.equal('still going');
  });

  it('ends open streams with an error CANCELLED when the task is cancelled', async () => {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'manual cancel' } });
    const id = res.body.data.id;
    const client = await openSse(streamUrl(id), auth());
    await client.waitFor((f) => f.event === 'history_done');
    await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
    await client.ended;
    expect(client.frames.at(-1)!.event).to.equal('error');
    expect(client.frames.at(-1)!.data).to.deep.equal({ code: 'CANCELLED', message: 'Task cancelled' });
  });

  it('never lets a client that stops reading block the task or other clients', async function () {
    this.timeout(30_000);
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'manual slow client' } });
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['running']);
    // A raw socket that sends the request and never reads a byte of the answer.
    const stalled = connect(Number(new URL(airlock.url).port), '127.0.0.1');
    stalled.on('error', () => {});
    stalled.write(`GET /api/v1/tasks/${id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${airlock.key}\r\n\r\n`);
    stalled.pause();
    const reader: SseClient = await openSse(streamUrl(id), auth());
    await reader.waitFor((f) => f.event === 'history_done');
    const chunk = 'x'.repeat(8 * 1024);
    for (let i = 0; i < 1_500; i++) manual.push({ type: 'text_delta', text: chunk });
    manual.end('big');
    const task = await waitForStatus(airlock, id, ['completed'], 20_000);
    expect(task.status).to.equal('completed');
    await reader.ended;
    expect(reader.frames.filter((f) => f.event === 'content' && f.data.isPartial)).to.have.length(1_500);
    stalled.destroy();
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

