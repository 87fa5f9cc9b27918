import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeAnthropic } from '../../fixtures/fakeAnthropic.js';
import type { FakeAnthropic } from '../../fixtures/fakeAnthropic.js';
import { startTestAirlock, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { FakeToolRouter, text } from '../support/fakes.js';
import { readSse } from '../support/sse.js';

const PROVIDER_KEY = 'test-provider-key-5b1e0c';

describe('Tasks on the Anthropic model (real SDK, fake endpoint)', () => {
  let fake: FakeAnthropic;
  let airlock: TestAirlock;
  let tools: FakeToolRouter;
  let configDir: string;

  before(async () => {
    fake = await startFakeAnthropic();
    configDir = await mkdtemp(join(tmpdir(), 'airlock-config-'));
    const configPath = join(configDir, 'airlock.config.json');
    await writeFile(configPath, JSON.stringify({ model: { maxRetries: 1 }, projects: { default: { systemPrompt: 'Project rule: be exact.' } } }));
    tools = new FakeToolRouter({ weather: { server: 'wx', handler: (args) => text(`sunny in ${String(args.city)}`) } });
    airlock = await startTestAirlock({
      env: { ANTHROPIC_API_KEY: PROVIDER_KEY, ANTHROPIC_BASE_URL: fake.url, AIRLOCK_MODEL: 'claude-test-model', AIRLOCK_CONFIG: configPath },
      overrides: { toolRouter: tools },
    });
  });
  afterEach(() => {
    expect(fake.unexpected).to.equal(0);
    expect(fake.pending()).to.equal(0);
  });
  after(async () => {
    await airlock.stop();
    await fake.close();
    await rm(configDir, { recursive: true, force: true });
    expect(tools.unexpected).to.deep.equal([]);
    const logs = airlock.logs.join('\n');
    expect(logs).not.to.include(PROVIDER_KEY);
  });

  it('runs the agent loop: streamed text, a tool call, the tool result back to the model, the final answer', async () => {
    fake.enqueue({ kind: 'tool_use', id: 'toolu_01', name: 'weather', input: { city: 'Oslo' }, text: 'Let me check.' }, { kind: 'text', text: 'It is sunny in Oslo.', chunks: 3 });
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'Weather in Oslo?', systemPrompt: 'Task rule: one sentence.' } });
    const id = res.body.data.id;
    const task = await waitForStatus(airlock, id, ['completed']);
    expect(task.output.content).to.equal('Let me check.\n\nIt is sunny in Oslo.');
    expect(task.output.toolCalls[0]).to.include({ callId: 'toolu_01', toolName: 'weather', server: 'wx', status: 'success', output: 'sunny in Oslo' });
    expect(task.usage).to.deep.equal({ inputTokens: 40, outputTokens: 18, turns: 2 });

    const [first, second] = fake.requests.slice(-2).map((r) => r.body);
    expect(fake.requests.at(-1)!.headers.authorization).to.equal(`Bearer ${PROVIDER_KEY}`);
    expect(first.model).to.equal('claude-test-model');
    expect(first.stream).to.equal(true);
    const system = typeof first.system === 'string' ? first.system : first.system.map((b: { text: string }) => b.text).join('');
    expect(system.indexOf('Project rule: be exact.')).to.be.lessThan(system.indexOf('Task rule: one sentence.'));
    expect(first.tools.map((t: { name: string }) => t.name)).to.deep.equal(['weather']);
    expect(second.messages.at(-1).content[0]).to.deep.include({ type: 'tool_result', tool_use_id: 'toolu_01' });

    const stream = await readSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
    const events = stream.frames.map((f) => `${f.event}${f.data.status ? `:${f.data.status}` : ''}${f.data.isPartial === false ? ':final' : ''}`);
    expect(events.filter((e) => !e.startsWith('content') || e.endsWith(':final'))).to.deep.equal([
      'status:running', 'status:connecting', 'status:processing', 'content:final', 'tool_call:executing', 'tool_result:success', 'status:processing', 'content:final', 'status:completed', 'done',
    ]);
    expect(stream.frames.filter((f) => f.event === 'content' && f.data.isPartial).length).to.be.greaterThan(2);
  });

  it('shows thinking as a thought', async () => {
    fake.enqueue({ kind: 'thinking', thinking: '**Checking units**\nCelsius it is.', signature: 'sig', text: '20 degrees.' });
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'Temperature?' } });
    const task = await waitForStatus(airlock, res.body.data.id, ['completed']);
    expect(task.output.thoughts).to.deep.equal([{ subject: 'Checking units', description: 'Celsius it is.' }]);
  });

  it('retries a 429 after retry-after and shows the wait as a status event', async () => {
    fake.enqueue({ kind: 'status', status: 429, retryAfter: '0' }, { kind: 'text', text: 'after the wait' });
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'hi' } });
    const task = await waitForStatus(airlock, res.body.data.id, ['completed']);
    expect(task.output.content).to.equal('after the wait');
    const stream = await readSse(`${airlock.url}/api/v1/tasks/${res.body.data.id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
    const retrying = stream.frames.find((f) => f.event === 'status' && f.data.status === 'retrying');
    expect(retrying?.data.message).to.match(/429/);
  });

  it('fails the task with EXECUTION_ERROR when the provider keeps failing, and the service goes on', async () => {
    fake.enqueue({ kind: 'status', status: 500, retryAfter: '0' }, { kind: 'status', status: 500, retryAfter: '0' });
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'hi' } });
    const task = await waitForStatus(airlock, res.body.data.id, ['failed']);
    expect(task.errorCode).to.equal('EXECUTION_ERROR');
    expect(task.error).to.match(/Model provider error \(500\)/);
    expect(JSON.stringify(task)).not.to.include(PROVIDER_KEY);

    fake.enqueue({ kind: 'malformed' }, { kind: 'malformed' });
    const bad = await airlock.api('/tasks', { method: 'POST', json: { message: 'hi' } });
    expect((await waitForStatus(airlock, bad.body.data.id, ['failed'])).error).to.match(/malformed/i);

    fake.enqueue({ kind: 'text', text: 'fine again' });
    const ok = await airlock.api('/tasks', { method: 'POST', json: { message: 'hi' } });
    expect((await waitForStatus(airlock, ok.body.data.id, ['completed'])).output.content).to.equal('fine again');
  });

  it('cancels a slow model stream at once', async () => {
    fake.enqueue({ kind: 'slow', text: 'one two three four five six', delayMs: 2_000 });
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: 'slow please' } });
    const id = res.body.data.id;
    await waitForStatus(airlock, id, ['running']);
    while (fake.requests.filter((r) => JSON.stringify(r.body).includes('slow please')).length === 0) await new Promise((r) => setTimeout(r, 10));
    const disconnect = fake.nextDisconnect();
    await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
    await disconnect;
    expect((await airlock.api(`/tasks/${id}`)).body.data.status).to.equal('cancelled');
  });
});
