import { createServer } from 'node:net';
import { expect } from 'chai';
import { FAKE_USAGE, startFakeAnthropic, type FakeAnthropic } from '../../fixtures/fakeAnthropic.js';
import { AnthropicModelClient, type AnthropicModelClientOptions } from '../../src/model/anthropicModelClient.js';
import { ModelError, type ModelRequest, type ModelStreamEvent } from '../../src/model/modelClient.js';

const API_KEY = 'sk-ant-test-DO-NOT-LEAK-0123456789abcdef';
const MODEL = 'claude-test-model';

type EventOf<T extends ModelStreamEvent['type']> = Extract<ModelStreamEvent, { type: T }>;

function ofType<T extends ModelStreamEvent['type']>(events: ModelStreamEvent[], type: T): Array<EventOf<T>> {
  return events.filter((e): e is EventOf<T> => e.type === type);
}

function turnEnd(events: ModelStreamEvent[]): EventOf<'turn_end'> {
  const last = events.at(-1);
  expect(last?.type, 'last event').to.equal('turn_end');
  return last as EventOf<'turn_end'>;
}

function makeRequest(overrides: Partial<ModelRequest> = {}): ModelRequest {
  return {
    system: 'You are a test assistant.',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello' }] }],
    tools: [],
    signal: new AbortController().signal,
    ...overrides,
  };
}

async function collect(stream: AsyncIterable<ModelStreamEvent>, onEvent?: (e: ModelStreamEvent) => void): Promise<ModelStreamEvent[]> {
  const events: ModelStreamEvent[] = [];
  for await (const event of stream) {
    events.push(event);
    onEvent?.(event);
  }
  return events;
}

/** Runs a stream that must fail; returns the error and what was yielded before it. */
async function collectFailure(
  stream: AsyncIterable<ModelStreamEvent>,
  onEvent?: (e: ModelStreamEvent) => void,
): Promise<{ error: unknown; events: ModelStreamEvent[] }> {
  const events: ModelStreamEvent[] = [];
  try {
    for await (const event of stream) {
      events.push(event);
      onEvent?.(event);
    }
  } catch (error) {
    return { error, events };
  }
  throw new Error(`stream succeeded unexpectedly: ${JSON.stringify(events.at(-1))}`);
}

function expectModelError(error: unknown, pattern: RegExp): ModelError {
  expect(error).to.be.instanceOf(ModelError);
  const message = (error as ModelError).message;
  expect(message).to.match(pattern);
  expect(message).not.to.include(API_KEY);
  expect(message.toLowerCase()).not.to.include('authorization');
  return error as ModelError;
}

describe('AnthropicModelClient', () => {
  let fake: FakeAnthropic;
  let delays: number[];

  /** A client whose backoff waits are recorded, not slept. */
  function makeClient(overrides: Partial<AnthropicModelClientOptions> = {}): AnthropicModelClient {
    return new AnthropicModelClient({
      apiKey: API_KEY,
      baseURL: fake.url,
      model: MODEL,
      maxTokens: 4096,
      sleep: async (ms, signal) => {
        signal.throwIfAborted();
        delays.push(ms);
      },
      ...overrides,
    });
  }

  beforeEach(async () => {
    fake = await startFakeAnthropic();
    delays = [];
  });

  afterEach(async () => {
    try {
      expect(fake.unexpected, 'requests the fake did not expect').to.equal(0);
      expect(fake.pending(), 'scripted responses never requested').to.equal(0);
    } finally {
      await fake.close();
    }
  });

  describe('#stream()', () => {
    it('streams text deltas and ends with the full text, stop reason and usage', async () => {
      const text = 'Hello there, this reply arrives in several pieces.';
      fake.enqueue({ kind: 'text', text, chunks: 4 });
      const client = makeClient();

      const events = await collect(client.stream(makeRequest()));

      const deltas = ofType(events, 'text_delta');
      expect(deltas.length).to.be.greaterThan(1);
      expect(deltas.map((d) => d.text).join('')).to.equal(text);
      const end = turnEnd(events);
      expect(end.content).to.deep.equal([{ type: 'text', text }]);
      expect(end.stopReason).to.equal('end_turn');
      expect(end.usage).to.deep.equal({
        inputTokens: FAKE_USAGE.input_tokens + FAKE_USAGE.cache_creation_input_tokens + FAKE_USAGE.cache_read_input_tokens,
        outputTokens: FAKE_USAGE.output_tokens,
      });
      expect(client.description).to.equal(`anthropic:${MODEL}`);

      expect(fake.requests).to.have.length(1);
      const sent = fake.requests[0]!;
      expect(sent.headers.authorization).to.equal(`Bearer ${API_KEY}`);
      expect(sent.body).to.include({ model: MODEL, max_tokens: 4096, stream: true, system: 'You are a test assistant.' });
      expect(sent.body).not.to.have.property('thinking');
      expect(sent.body).not.to.have.property('tools');
      expect(sent.body.messages).to.deep.equal([{ role: 'user', content: [{ type: 'text', text: 'Hello' }] }]);
    });

    it('parses a streamed tool_use and maps tools, system and tool_result blocks into the request', async () => {
      const input = { path: 'src/index.ts', lines: [1, 20], options: { follow: true } };
      fake.enqueue({ kind: 'tool_use', id: 'toolu_02', name: 'read_file', input, text: 'Reading it again.' });
      const client = makeClient();
      const request = makeRequest({
        system: 'System prompt for tools.',
        tools: [{ name: 'read_file', description: 'Reads a file', inputSchema: { type: 'object', properties: { path: { type: 'string' } } } }],
        messages: [
          { role: 'user', content: [{ type: 'text', text: 'Read the file' }] },
          {
            role: 'assistant',
            content: [
              { type: 'thinking', thinking: 'signed thought', signature: 'sig-1' },
              { type: 'thinking', thinking: 'unsigned thought' },
              { type: 'text', text: 'Reading.' },
              { type: 'tool_use', id: 'toolu_01', name: 'read_file', input: { path: 'src/index.ts' } },
            ],
          },
          {
            role: 'user',
            content: [
              {
                type: 'tool_result',
                toolUseId: 'toolu_01',
                isError: true,
                content: [
                  { type: 'text', text: 'ENOENT' },
                  { type: 'image', data: 'aGVsbG8=', mimeType: 'image/png' },
                ],
              },
            ],
          },
        ],
      });

      const events = await collect(client.stream(request));

      const end = turnEnd(events);
      expect(end.stopReason).to.equal('tool_use');
      expect(end.content).to.deep.equal([
        { type: 'text', text: 'Reading it again.' },
        { type: 'tool_use', id: 'toolu_02', name: 'read_file', input },
      ]);
      const body = fake.requests[0]!.body;
      expect(body.system).to.equal('System prompt for tools.');
      expect(body.tools).to.deep.equal([
        { name: 'read_file', description: 'Reads a file', input_schema: { type: 'object', properties: { path: { type: 'string' } } } },
      ]);
      expect(body.messages).to.deep.equal([
        { role: 'user', content: [{ type: 'text', text: 'Read the file' }] },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'signed thought', signature: 'sig-1' },
            { type: 'text', text: 'Reading.' },
            { type: 'tool_use', id: 'toolu_01', name: 'read_file', input: { path: 'src/index.ts' } },
          ],
        },
        {
          role: 'user',
          content: [
            {
              type: 'tool_result',
              tool_use_id: 'toolu_01',
              is_error: true,
              content: [
                { type: 'text', text: 'ENOENT' },
                { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'aGVsbG8=' } },
              ],
            },
          ],
        },
      ]);
    });

    it('streams thinking deltas, a thought, and a signed thinking block', async () => {
      const thinking = '**Checking the plan**\nThe user wants a greeting, so I will greet them.';
      fake.enqueue({ kind: 'thinking', thinking, signature: 'EqQBCkYIBRgCKkB-signature', text: 'Hi!' });
      const client = makeClient({ thinkingBudgetTokens: 2048 });

      const events = await collect(client.stream(makeRequest()));

      expect(fake.requests[0]!.body.thinking).to.deep.equal({ type: 'enabled', budget_tokens: 2048 });
      expect(ofType(events, 'thinking_delta').map((d) => d.thinking).join('')).to.equal(thinking);
      const thoughts = ofType(events, 'thought');
      expect(thoughts).to.deep.equal([
        { type: 'thought', subject: 'Checking the plan', description: 'The user wants a greeting, so I will greet them.' },
      ]);
      // The thought is announced when its block completes, before the answer text starts.
      const thoughtAt = events.findIndex((e) => e.type === 'thought');
      expect(thoughtAt).to.be.lessThan(events.findIndex((e) => e.type === 'text_delta'));
      expect(turnEnd(events).content).to.deep.equal([
        { type: 'thinking', thinking, signature: 'EqQBCkYIBRgCKkB-signature' },
        { type: 'text', text: 'Hi!' },
      ]);
    });

    it('asks for a request\'s maxTokens (capped at the client\'s), leaving thinking out when it would not fit', async () => {
      const client = makeClient({ thinkingBudgetTokens: 2048 });
      for (const maxTokens of [50, 3_000, 1_000_000]) {
        fake.enqueue({ kind: 'text', text: 'ok', chunks: 1 });
        await collect(client.stream(makeRequest({ maxTokens })));
      }
      expect(fake.requests.map((r) => [r.body.max_tokens, r.body.thinking])).to.deep.equal([
        [50, undefined],
        [3_000, { type: 'enabled', budget_tokens: 2048 }],
        [4096, { type: 'enabled', budget_tokens: 2048 }],
      ]);
    });

    it('retries a 429 after the retry-after the server asked for', async () => {
      fake.enqueue({ kind: 'status', status: 429, retryAfter: '2' }, { kind: 'text', text: 'after the wait' });
      const events = await collect(makeClient().stream(makeRequest()));

      expect(ofType(events, 'retrying')).to.deep.equal([{ type: 'retrying', attempt: 1, delayMs: 2000, reason: 'rate limited (429)' }]);
      expect(delays).to.deep.equal([2000]);
      expect(turnEnd(events).content).to.deep.equal([{ type: 'text', text: 'after the wait' }]);
      expect(fake.requests).to.have.length(2);
    });

    it('honours retry-after-ms, an HTTP-date retry-after, and caps waits at retryMaxDelayMs', async () => {
      const inFiveSeconds = new Date(Date.now() + 5_000).toUTCString();
      fake.enqueue(
        { kind: 'status', status: 429, headers: { 'retry-after-ms': '1234' } },
        { kind: 'status', status: 429, retryAfter: inFiveSeconds },
        { kind: 'status', status: 529, retryAfter: '600' },
        { kind: 'text', text: 'finally' },
      );
      const events = await collect(makeClient({ retryMaxDelayMs: 10_000 }).stream(makeRequest()));

      expect(delays[0]).to.equal(1234);
      // HTTP dates have whole-second resolution.
      expect(delays[1]).to.be.within(3_000, 5_000);
      expect(delays[2]).to.equal(10_000);
      expect(ofType(events, 'retrying').map((r) => r.attempt)).to.deep.equal([1, 2, 3]);
      expect(ofType(events, 'retrying')[2]!.reason).to.equal('overloaded');
      expect(turnEnd(events).content).to.deep.equal([{ type: 'text', text: 'finally' }]);
    });

    it('retries a 500 with exponential backoff and then succeeds', async () => {
      fake.enqueue({ kind: 'status', status: 500 }, { kind: 'text', text: 'recovered' });
      const events = await collect(makeClient({ retryBaseDelayMs: 400 }).stream(makeRequest()));

      const [retry] = ofType(events, 'retrying');
      expect(retry).to.include({ attempt: 1, reason: 'server error (500)' });
      // Base delay with up to 25% jitter taken off.
      expect(retry!.delayMs).to.be.within(300, 400);
      expect(ofType(events, 'text_delta').map((d) => d.text).join('')).to.equal('recovered');
    });

    it('retries an overloaded_error sent inside the event stream', async () => {
      fake.enqueue({ kind: 'stream_error', errorType: 'overloaded_error' }, { kind: 'text', text: 'second try' });
      const events = await collect(makeClient().stream(makeRequest()));

      expect(ofType(events, 'retrying').map((r) => r.reason)).to.deep.equal(['overloaded']);
      expect(ofType(events, 'text_delta').map((d) => d.text).join('')).to.equal('second try');
      expect(fake.requests).to.have.length(2);
    });

    it('does not retry a failure once text has been yielded', async () => {
      fake.enqueue({ kind: 'stream_error', errorType: 'overloaded_error', afterText: 'partial answer' });
      const { error, events } = await collectFailure(makeClient().stream(makeRequest()));

      expectModelError(error, /overloaded/i);
      expect(ofType(events, 'text_delta').map((d) => d.text).join('')).to.equal('partial answer');
      expect(ofType(events, 'retrying')).to.have.length(0);
      expect(fake.requests).to.have.length(1);
    });

    it('fails a 400 at once with the provider message', async () => {
      fake.enqueue({ kind: 'status', status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: too large' } } });
      const { error, events } = await collectFailure(makeClient().stream(makeRequest()));

      const err = expectModelError(error, /^Model provider error \(400\): max_tokens: too large$/);
      expect(err.name).to.equal('ModelError');
      expect(events).to.have.length(0);
      expect(fake.requests).to.have.length(1);
    });

    it('treats a stream with a non-JSON data line as malformed, retrying only while nothing was yielded', async () => {
      fake.enqueue({ kind: 'malformed' }, { kind: 'malformed' });
      const sdkLog: unknown[][] = [];
      const record = (...args: unknown[]) => void sdkLog.push(args);
      const client = makeClient({ maxRetries: 1, logger: { error: record, warn: record, info: record, debug: record } });
      const { error, events } = await collectFailure(client.stream(makeRequest()));

      expectModelError(error, /malformed response stream/);
      expect(sdkLog.length, 'the SDK logs the bad chunk').to.be.greaterThan(0);
      expect(ofType(events, 'retrying').map((r) => r.reason)).to.deep.equal(['malformed response stream']);
      expect(fake.requests).to.have.length(2);
    });

    it('gives up with a ModelError when retries are exhausted', async () => {
      fake.enqueue({ kind: 'status', status: 529 }, { kind: 'status', status: 529 }, { kind: 'status', status: 529 });
      const { error, events } = await collectFailure(makeClient({ maxRetries: 2, retryBaseDelayMs: 100 }).stream(makeRequest()));

      expectModelError(error, /^Model provider error \(529\): Overloaded \(gave up after 2 retries\)$/);
      const retries = ofType(events, 'retrying');
      expect(retries.map((r) => r.attempt)).to.deep.equal([1, 2]);
      expect(retries[0]!.delayMs).to.be.within(75, 100);
      expect(retries[1]!.delayMs).to.be.within(150, 200);
      expect(fake.requests).to.have.length(3);
    });

    it('retries connection errors and reports them without leaking the key', async () => {
      const closedPort = await freePort();
      const client = makeClient({ baseURL: `http://127.0.0.1:${closedPort}`, maxRetries: 1 });
      const { error, events } = await collectFailure(client.stream(makeRequest()));

      expectModelError(error, /connection error/);
      expect(ofType(events, 'retrying').map((r) => r.reason)).to.deep.equal(['connection error']);
    });

    it('never puts the API key in an error message, even when the provider echoes it', async () => {
      fake.enqueue({
        kind: 'status',
        status: 400,
        body: { type: 'error', error: { type: 'invalid_request_error', message: `bad token Bearer ${API_KEY} for this model` } },
      });
      const { error } = await collectFailure(makeClient().stream(makeRequest()));

      const err = expectModelError(error, /\[redacted\]/);
      expect(String(err.stack)).not.to.include(API_KEY);
    });

    it('stops promptly with the abort reason when aborted mid-stream, and drops the connection', async () => {
      fake.enqueue({ kind: 'slow', text: 'abcdefghijklmnopqrstuvwxyz', delayMs: 100 });
      const controller = new AbortController();
      const reason = new Error('cancelled by test');
      let abortedAt = 0;
      const stream = makeClient().stream(makeRequest({ signal: controller.signal }));

      const { error, events } = await collectFailure(stream, (event) => {
        if (event.type === 'text_delta' && !abortedAt) {
          abortedAt = Date.now();
          controller.abort(reason);
        }
      });

      expect(error).to.equal(reason);
      expect(error).not.to.be.instanceOf(ModelError);
      // The rest of the slow stream would take 2.5 s.
      expect(Date.now() - abortedAt).to.be.lessThan(1_000);
      expect(ofType(events, 'text_delta').map((d) => d.text)).to.deep.equal(['a']);
      await fake.nextDisconnect();
      expect(fake.disconnects).to.equal(1);
    });

    it('closes the HTTP call when the consumer stops reading early', async () => {
      fake.enqueue({ kind: 'slow', text: 'abcdefghijklmnopqrstuvwxyz', delayMs: 100 });
      const received: string[] = [];
      for await (const event of makeClient().stream(makeRequest())) {
        if (event.type === 'text_delta') received.push(event.text);
        if (received.length === 2) break;
      }

      expect(received).to.deep.equal(['a', 'b']);
      await fake.nextDisconnect();
      expect(fake.disconnects).to.equal(1);
    });

    it('throws an AbortError, not a ModelError, when aborted while waiting to retry', async () => {
      fake.enqueue({ kind: 'status', status: 429, retryAfter: '10' });
      const controller = new AbortController();
      // The real sleep: the 10 s wait must end the moment the signal aborts.
      const client = new AnthropicModelClient({ apiKey: API_KEY, baseURL: fake.url, model: MODEL, maxTokens: 1024 });
      const started = Date.now();

      const { error, events } = await collectFailure(client.stream(makeRequest({ signal: controller.signal })), (event) => {
        if (event.type === 'retrying') controller.abort();
      });

      expect(error).to.be.instanceOf(Error);
      expect((error as Error).name).to.equal('AbortError');
      expect(error).not.to.be.instanceOf(ModelError);
      expect(Date.now() - started).to.be.lessThan(2_000);
      expect(ofType(events, 'retrying')).to.have.length(1);
      expect(fake.requests).to.have.length(1);
    });

    it('does not call the provider when the signal is already aborted', async () => {
      const controller = new AbortController();
      controller.abort();
      const { error } = await collectFailure(makeClient().stream(makeRequest({ signal: controller.signal })));

      expect((error as Error).name).to.equal('AbortError');
      expect(fake.requests).to.have.length(0);
    });
  });
});

/** A loopback port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}
