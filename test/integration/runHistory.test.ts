import { expect } from 'chai';
import { startFakeAnthropic } from '../../fixtures/fakeAnthropic.js';
import type { FakeAnthropic } from '../../fixtures/fakeAnthropic.js';
import { startTestAirlock, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { FakeToolRouter, text } from '../support/fakes.js';
import { openSse, readSse } from '../support/sse.js';

// The hosted API's history (and a stream's replay) has one assistant message per run, with all its
// thoughts and tool calls and its final text. Before, every model turn was a message of its own, so
// a run whose first turn only called a tool showed as an empty assistant bubble.
describe('History: one assistant message per run', () => {
  let fake: FakeAnthropic;
  let airlock: TestAirlock;
  let release!: () => void;

  before(async () => {
    fake = await startFakeAnthropic();
    const tools = new FakeToolRouter({
      weather: { server: 'wx', handler: (args) => text(`sunny in ${String(args.city)}`) },
      slow: { server: 'wx', handler: () => new Promise((resolve) => (release = () => resolve(text('slow done')))) },
    });
    airlock = await startTestAirlock({ env: { ANTHROPIC_API_KEY: 'test-provider-key', ANTHROPIC_BASE_URL: fake.url, AIRLOCK_MODEL: 'claude-test-model' }, overrides: { toolRouter: tools } });
  });
  afterEach(() => {
    expect(fake.unexpected).to.equal(0);
    expect(fake.pending()).to.equal(0);
  });
  after(async () => {
    release?.(); // a failed test must not leave the slow call holding the shutdown
    await airlock.stop();
    await fake.close();
  });

  const auth = () => ({ authorization: `Bearer ${airlock.key}` });
  const streamUrl = (id: string) => `${airlock.url}/api/v1/tasks/${id}/stream`;

  it('shows each run of a tool-using task and its follow-up as one assistant message, while the model still sees every turn', async () => {
    fake.enqueue(
      { kind: 'tool_use', id: 'toolu_01', name: 'weather', input: { city: 'Oslo' }, text: 'Let me check.' },
      { kind: 'text', text: 'It is sunny in Oslo.' },
      // The follow-up's first turn calls a tool without any text: the empty bubble of before.
      { kind: 'tool_use', id: 'toolu_02', name: 'weather', input: { city: 'Bergen' } },
      { kind: 'text', text: 'Sunny in Bergen too.' },
    );
    const id = (await airlock.api('/tasks', { method: 'POST', json: { message: 'Weather in Oslo?' } })).body.data.id;
    await waitForStatus(airlock, id, ['completed']);
    await airlock.api(`/tasks/${id}/messages`, { method: 'POST', json: { message: 'And Bergen?' } });
    const task = await waitForStatus(airlock, id, ['completed']);

    const { messages } = (await airlock.api(`/tasks/${id}/history`)).body.data;
    expect(messages.map((m: { role: string }) => m.role)).to.deep.equal(['user', 'assistant', 'user', 'assistant']);
    expect(messages[1]).to.include({ content: 'Let me check.\n\nIt is sunny in Oslo.' });
    expect(messages[1].toolCalls).to.deep.equal([{ callId: 'toolu_01', toolName: 'weather', server: 'wx', status: 'success', args: { city: 'Oslo' }, output: 'sunny in Oslo' }]);
    expect(messages[3]).to.include({ content: 'Sunny in Bergen too.' });
    expect(messages[3].toolCalls.map((c: { callId: string }) => c.callId)).to.deep.equal(['toolu_02']);
    expect(task.messageCount).to.equal(4);
    const listed = (await airlock.api('/tasks?limit=100')).body.data.find((t: { id: string }) => t.id === id);
    expect(listed.messageCount).to.equal(4);

    // The stream's replay is the same history.
    const replay = await readSse(streamUrl(id), auth());
    expect(replay.frames.filter((f) => f.event === 'history_message').map((f) => f.data)).to.deep.equal(messages);
    expect(replay.frames.at(-1)!.data).to.deep.equal({ messageCount: 4, isStreaming: false });

    // The provider still got the conversation turn by turn: text and tool_use, the result, the answer.
    const last = fake.requests.at(-1)!.body.messages;
    expect(last.map((m: { role: string }) => m.role)).to.deep.equal(['user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user']);
    expect(last[1].content.map((b: { type: string }) => b.type)).to.deep.equal(['text', 'tool_use']);
    expect(last[2].content[0]).to.include({ type: 'tool_result', tool_use_id: 'toolu_01' });
    expect(last[5].content.map((b: { type: string }) => b.type)).to.deep.equal(['tool_use']);
  });

  it('leaves a live run out of the history: a stream shows it whole as the catch-up, then live, then stored as one message', async () => {
    fake.enqueue(
      { kind: 'tool_use', id: 'toolu_11', name: 'weather', input: { city: 'Rome' }, text: 'First Rome.' },
      { kind: 'tool_use', id: 'toolu_12', name: 'slow', input: {} },
      { kind: 'text', text: 'All done.' },
    );
    const id = (await airlock.api('/tasks', { method: 'POST', json: { message: 'Two steps' } })).body.data.id;
    await waitFor(async () => (await airlock.api(`/tasks/${id}`)).body.data.output?.toolCalls?.some((c: { callId: string; status: string }) => c.callId === 'toolu_12' && c.status === 'executing'), 'the slow call');

    const history = (await airlock.api(`/tasks/${id}/history`)).body.data;
    expect(history.messages.map((m: { role: string }) => m.role)).to.deep.equal(['user']);

    const client = await openSse(streamUrl(id), auth());
    await client.waitFor((f) => f.event === 'tool_call' && f.data.callId === 'toolu_12');
    expect(client.frames.map((f) => [f.event, f.data.callId ?? f.data.text ?? f.data.messageCount])).to.deep.equal([
      ['history_message', undefined],
      ['history_done', 1],
      ['content', 'First Rome.'],
      ['tool_call', 'toolu_11'],
      ['tool_result', 'toolu_11'],
      ['tool_call', 'toolu_12'],
    ]);
    release();
    await client.ended;
    expect(client.frames.at(-1)!.data).to.deep.equal({ finalResponse: 'First Rome.\n\nAll done.' });

    const after = await readSse(streamUrl(id), auth());
    const answer = after.frames.filter((f) => f.event === 'history_message').map((f) => f.data);
    expect(answer.map((m) => m.role)).to.deep.equal(['user', 'assistant']);
    expect(answer[1]).to.include({ content: 'First Rome.\n\nAll done.' });
    expect(answer[1].toolCalls.map((c: { callId: string; status: string }) => `${c.callId}:${c.status}`)).to.deep.equal(['toolu_11:success', 'toolu_12:success']);
  });
});
