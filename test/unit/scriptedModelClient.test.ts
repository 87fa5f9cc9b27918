import { expect } from 'chai';
import { ModelError } from '../../src/model/modelClient.js';
import type { ContentBlock, ModelMessage, ModelStreamEvent } from '../../src/model/modelClient.js';
import { ScriptedModelClient } from '../../src/model/scriptedModelClient.js';
import { rejection } from '../support/harness.js';

type ToolUse = Extract<ContentBlock, { type: 'tool_use' }>;
type TurnEnd = Extract<ModelStreamEvent, { type: 'turn_end' }>;

const user = (...texts: string[]): ModelMessage => ({ role: 'user', content: texts.map((text) => ({ type: 'text', text })) });
const result = (toolUseId: string, text: string, isError = false): ModelMessage => ({
  role: 'user', content: [{ type: 'tool_result', toolUseId, content: [{ type: 'text', text }], isError }],
});

async function turn(messages: ModelMessage[], signal = new AbortController().signal): Promise<ModelStreamEvent[]> {
  const events: ModelStreamEvent[] = [];
  for await (const event of new ScriptedModelClient().stream({ system: '', messages, tools: [], signal })) events.push(event);
  return events;
}

function endOf(events: ModelStreamEvent[]): TurnEnd {
  const end = events.at(-1);
  if (end?.type !== 'turn_end') throw new Error('the stream did not end with turn_end');
  return end;
}

function toolUses(end: TurnEnd): ToolUse[] {
  return end.content.filter((b): b is ToolUse => b.type === 'tool_use');
}

function textOf(end: TurnEnd): string {
  return end.content.filter((b) => b.type === 'text').map((b) => (b.type === 'text' ? b.text : '')).join('');
}


/** Plays a whole script: each turn's tool calls are answered with `answer`, until the final text. */
async function play(conversation: ModelMessage[], answer: (call: ToolUse) => string): Promise<{ ids: string[]; final: string }> {
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const end = endOf(await turn(conversation));
    conversation.push({ role: 'assistant', content: end.content });
    const calls = toolUses(end);
    if (!calls.length) return { ids, final: textOf(end) };
    expect(calls).to.have.length(1);
    const call = calls[0]!;
    ids.push(call.id);
    conversation.push(result(call.id, answer(call)));
  }
  throw new Error('the script never finished');
}

describe('ScriptedModelClient', () => {
  describe('#stream()', () => {
    it('makes one /call per turn, in order, with its arguments', async () => {
      const conversation = [user('/call first {"a":1}\n/call second {"b":[2]}\n/reply done')];
      const first = endOf(await turn(conversation));
      expect(first.stopReason).to.equal('tool_use');
      expect(toolUses(first).map((c) => [c.name, c.input])).to.deep.equal([['first', { a: 1 }]]);

      conversation.push({ role: 'assistant', content: first.content }, result(toolUses(first)[0]!.id, 'ok'));
      const second = endOf(await turn(conversation));
      expect(toolUses(second).map((c) => [c.name, c.input])).to.deep.equal([['second', { b: [2] }]]);

      conversation.push({ role: 'assistant', content: second.content }, result(toolUses(second)[0]!.id, 'ok'));
      const last = endOf(await turn(conversation));
      expect(last.stopReason).to.equal('end_turn');
      expect(toolUses(last)).to.deep.equal([]);
      expect(textOf(last)).to.equal('done');
    });

    it('gives a /call with no arguments an empty object', async () => {
      const end = endOf(await turn([user('/call ping')]));
      expect(toolUses(end)[0]).to.include({ name: 'ping' });
      expect(toolUses(end)[0]!.input).to.deep.equal({});
    });

    it('numbers calls toolu_scripted_N, unique across the conversation including after a follow-up', async () => {
      const conversation = [user('/call a {}\n/call b {}')];
      const run1 = await play(conversation, () => 'ok');
      conversation.push(user('/call c {}\n/call d {}'));
      const run2 = await play(conversation, () => 'ok');
      expect([...run1.ids, ...run2.ids]).to.deep.equal(['toolu_scripted_1', 'toolu_scripted_2', 'toolu_scripted_3', 'toolu_scripted_4']);
    });

    it('joins /reply lines with newlines as the final text, streamed as deltas that add up to it', async () => {
      const events = await turn([user('/reply Hello there, this is a longer first line\nnoise line\n/reply second line')]);
      const end = endOf(events);
      expect(textOf(end)).to.equal('Hello there, this is a longer first line\nsecond line');
      const deltas = events.filter((e) => e.type === 'text_delta').map((e) => (e.type === 'text_delta' ? e.text : ''));
      expect(deltas.length).to.be.greaterThan(1);
      expect(deltas.join('')).to.equal(textOf(end));
    });

    it('without /reply, answers with each call and the first 200 characters of its result', async () => {
      const long = `${'x'.repeat(200)}TAIL`;
      const conversation = [user('/call one {}\n/call two {"n":2}')];
      const { final } = await play(conversation, (call) => (call.name === 'one' ? 'short result' : long));
      expect(final).to.equal(`- one: short result\n- two: ${'x'.repeat(200)}`);
    });

    it('says there is nothing to do when the script has no /call and no /reply', async () => {
      const end = endOf(await turn([user('just chatting')]));
      expect(textOf(end)).to.match(/^Nothing to do/);
    });

    it('yields /think thoughts before any output of the turn', async () => {
      const events = await turn([user('/think **Plan** first\n/reply hi')]);
      const types = events.map((e) => e.type);
      const firstThought = types.indexOf('thought');
      expect(firstThought).to.be.at.least(0);
      expect(firstThought).to.be.lessThan(types.indexOf('text_delta'));
      expect(events[firstThought]).to.deep.equal({ type: 'thought', subject: 'Thinking', description: '**Plan** first' });
      expect(endOf(events).content[0]).to.deep.equal({ type: 'thinking', thinking: '**Plan** first' });
    });

    it('ignores lines that are not commands', async () => {
      const end = endOf(await turn([user('hello\n /reply indented works\n/replying no\n/callx nope {}\n# /call not-at-start {}')]));
      expect(toolUses(end)).to.deep.equal([]);
      expect(textOf(end)).to.equal('indented works');
    });

    it('reads only the newest user text block as the script', async () => {
      const end = endOf(await turn([user('/call old {}', '/reply new')]));
      expect(toolUses(end)).to.deep.equal([]);
      expect(textOf(end)).to.equal('new');
    });

    it('waits for /delay before answering', async () => {
      const started = Date.now();
      const end = endOf(await turn([user('/delay 50\n/reply late')]));
      expect(Date.now() - started).to.be.at.least(45);
      expect(textOf(end)).to.equal('late');
    });

    it('rejects with the signal reason soon after an abort during /delay', async () => {
      const controller = new AbortController();
      const reason = new Error('stop now');
      const started = Date.now();
      const pending = rejection(turn([user('/delay 60000\n/reply never')], controller.signal));
      setImmediate(() => controller.abort(reason));
      expect(await pending).to.equal(reason);
      expect(Date.now() - started).to.be.lessThan(1_000);
    });

    it('throws ModelError with the text of /fail', async () => {
      const err = await rejection(turn([user('/fail provider exploded')]));
      expect(err).to.be.instanceOf(ModelError);
      expect((err as Error).message).to.include('provider exploded');
    });

    it('throws ModelError naming the line when /call arguments are not valid JSON', async () => {
      const err = await rejection(turn([user('hello\n/call tool {not json}')]));
      expect(err).to.be.instanceOf(ModelError);
      expect((err as Error).message).to.include('line 2').and.to.include('tool');
    });

    it('throws ModelError naming the line when /call arguments are not an object', async () => {
      for (const args of ['[1,2]', '"text"', '42', 'null']) {
        const err = await rejection(turn([user(`/reply x\n\n/call tool ${args}`)]));
        expect(err, args).to.be.instanceOf(ModelError);
        expect((err as Error).message, args).to.include('line 3').and.to.include('JSON object');
      }
    });
  });
});
