import { format } from 'node:util';
import { expect } from 'chai';
import { startFakeAnthropic, type FakeAnthropic } from '../../fixtures/fakeAnthropic.js';
import { DEFAULT_MODEL } from '../../src/config.js';
import { AnthropicModelClient } from '../../src/model/anthropicModelClient.js';
import type { ModelStreamEvent } from '../../src/model/modelClient.js';
import { SdkWarnings } from '../../src/model/sdkLogger.js';
import { anthropicSdkTables } from '../support/anthropicSdkTables.js';
import { startTestAirlock, waitForStatus } from '../support/harness.js';

const PROVIDER_KEY = 'test-provider-key-8d41aa';
const sdk = anthropicSdkTables();
const DEPRECATED = Object.keys(sdk.deprecated)[0]!;

/** What reaches console.warn and stderr while it watches (passed on to stderr as well). */
function watchConsole(): { lines: string[]; restore(): void } {
  const lines: string[] = [];
  const { warn } = console;
  const write = process.stderr.write;
  console.warn = (...args: unknown[]) => void lines.push(`console.warn: ${format(...args)}`);
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
    lines.push(`stderr: ${String(chunk)}`);
    return (write as (...a: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
  }) as typeof process.stderr.write;
  return {
    lines,
    restore() {
      console.warn = warn;
      process.stderr.write = write;
    },
  };
}

async function run(client: AnthropicModelClient): Promise<ModelStreamEvent[]> {
  const events: ModelStreamEvent[] = [];
  const request = { system: 'test', messages: [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'hi' }] }], tools: [], signal: new AbortController().signal };
  for await (const event of client.stream(request)) events.push(event);
  return events;
}

describe('The Anthropic SDK\'s own warnings', () => {
  let fake: FakeAnthropic;
  let watch: ReturnType<typeof watchConsole> | undefined;

  beforeEach(async () => {
    fake = await startFakeAnthropic();
  });
  afterEach(async () => {
    watch?.restore();
    watch = undefined;
    try {
      expect(fake.unexpected, 'requests the fake did not expect').to.equal(0);
      expect(fake.pending(), 'scripted responses never requested').to.equal(0);
    } finally {
      await fake.close();
    }
  });

  describe('the default model', () => {
    it('is in none of the SDK\'s warning tables (deprecated, or warned of with thinking enabled)', () => {
      expect(Object.keys(sdk.deprecated)).to.include('claude-sonnet-4-5'); // the tables are the ones the SDK warns from
      expect(Object.keys(sdk.deprecated), `${DEFAULT_MODEL} is deprecated (end of life ${sdk.deprecated[DEFAULT_MODEL]})`).not.to.include(DEFAULT_MODEL);
      expect(sdk.warnWithThinkingEnabled).not.to.include(DEFAULT_MODEL);
    });

    it('makes the real SDK warn of nothing, with thinking enabled too', async () => {
      const warnings: string[] = [];
      fake.enqueue({ kind: 'text', text: 'fine' });
      const client = new AnthropicModelClient({
        apiKey: PROVIDER_KEY, baseURL: fake.url, model: DEFAULT_MODEL, maxTokens: 4096, thinkingBudgetTokens: 1024,
        warnings: new SdkWarnings((message) => warnings.push(message)),
      });
      watch = watchConsole();
      await run(client);
      expect(watch.lines).to.deep.equal([]);
      expect(warnings).to.deep.equal([]);
      expect(fake.requests[0]!.body).to.deep.include({ model: DEFAULT_MODEL, thinking: { type: 'enabled', budget_tokens: 1024 } });
    });
  });

  describe('SdkWarnings', () => {
    it('hands a deprecated model\'s warning to the sink once, across calls and clients, and prints nothing', async () => {
      const said: Array<{ message: string; model: string }> = [];
      const warnings = new SdkWarnings((message, model) => said.push({ message, model }));
      const clients = [1, 2].map(() => new AnthropicModelClient({ apiKey: PROVIDER_KEY, baseURL: fake.url, model: DEPRECATED, maxTokens: 1024, warnings }));
      fake.enqueue(...[1, 2, 3, 4].map((n) => ({ kind: 'text' as const, text: `reply ${n}` })));
      watch = watchConsole();
      for (const client of [...clients, ...clients]) expect((await run(client)).at(-1)?.type).to.equal('turn_end');
      watch.restore();
      expect(watch.lines).to.deep.equal([]);
      expect(said).to.have.length(1);
      expect(said[0]!.model).to.equal(DEPRECATED);
      expect(said[0]!.message).to.include(`The model '${DEPRECATED}' is deprecated and will reach end-of-life on ${sdk.deprecated[DEPRECATED]}`);
      expect(said[0]!.message).not.to.include('\n');
    });

    it('routes the thinking warning too, once per model', async () => {
      const model = sdk.warnWithThinkingEnabled[0]!;
      const said: string[] = [];
      const client = new AnthropicModelClient({
        apiKey: PROVIDER_KEY, baseURL: fake.url, model, maxTokens: 4096, thinkingBudgetTokens: 1024,
        warnings: new SdkWarnings((message) => said.push(message)),
      });
      fake.enqueue({ kind: 'text', text: 'one' }, { kind: 'text', text: 'two' });
      watch = watchConsole();
      await run(client);
      await run(client);
      watch.restore();
      expect(watch.lines).to.deep.equal([]);
      expect(said.filter((message) => message.includes('thinking.type=enabled'))).to.have.length(1);
    });

    it('gives console.warn back even when the call throws', () => {
      const warnings = new SdkWarnings(() => {});
      const before = console.warn;
      expect(() => warnings.capture('m', () => {
        console.warn('caught');
        throw new Error('boom');
      })).to.throw('boom');
      expect(console.warn).to.equal(before);
    });
  });

  describe('in a running Airlock', () => {
    async function airlockOn(model: string, logLevel: string) {
      return startTestAirlock({ env: { ANTHROPIC_API_KEY: PROVIDER_KEY, ANTHROPIC_BASE_URL: fake.url, AIRLOCK_MODEL: model, AIRLOCK_LOG_LEVEL: logLevel } });
    }

    async function runTasks(airlock: Awaited<ReturnType<typeof airlockOn>>, count: number): Promise<void> {
      fake.enqueue(...Array.from({ length: count }, (_, n) => ({ kind: 'text' as const, text: `answer ${n}` })));
      for (let n = 0; n < count; n++) {
        const res = await airlock.api('/tasks', { method: 'POST', json: { message: `question ${n}` } });
        await waitForStatus(airlock, res.body.data.id, ['completed']);
      }
    }

    it('writes one warn line through the logger for a deprecated model over several tasks, and nothing to stderr', async () => {
      const airlock = await airlockOn(DEPRECATED, 'debug');
      try {
        watch = watchConsole();
        await runTasks(airlock, 3);
        watch.restore();
        expect(fake.requests.map((r) => r.body.model)).to.deep.equal([DEPRECATED, DEPRECATED, DEPRECATED]);
        expect(watch.lines).to.deep.equal([]);
        const lines = airlock.logs.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => String(line.msg).includes('deprecated'));
        expect(lines).to.have.length(1);
        expect(lines[0]).to.include({ level: 40, component: 'anthropic-sdk', model: DEPRECATED });
      } finally {
        await airlock.stop();
      }
    });

    it('follows the log level: at "error" the warning is not written anywhere', async () => {
      const airlock = await airlockOn(DEPRECATED, 'error');
      try {
        watch = watchConsole();
        await runTasks(airlock, 2);
        watch.restore();
        expect(watch.lines).to.deep.equal([]);
        expect(airlock.logs.filter((line) => line.includes('deprecated'))).to.deep.equal([]);
      } finally {
        await airlock.stop();
      }
    });
  });
});
