import { expect } from 'chai';
import { historyMessages, runStartOf } from '../../src/runtime/tasks/history.js';
import type { MessageRecord } from '../../src/store/store.js';

let counter = 0;
function record(role: 'user' | 'assistant', content: string, extra: Partial<MessageRecord> = {}): MessageRecord {
  counter++;
  return { id: `m${counter}`, taskId: 't', role, content, createdAt: `2026-01-01T00:00:0${counter % 10}.000Z`, afterSeq: counter * 10, ...extra };
}

describe('historyMessages', () => {
  const call = (callId: string) => ({ callId, toolName: 'lookup', status: 'success' as const, args: {}, output: 'ok' });

  it('merges the turn records of a run into one assistant message: texts joined by a blank line, every thought and tool call', () => {
    const user = record('user', 'go', { attachedFiles: [{ name: 'a.csv', path: 'uploads/a.csv' }] });
    const turn1 = record('assistant', '', { thoughts: [{ subject: 'Plan', description: 'look' }], toolCalls: [call('c1'), call('c2')] });
    const turn2 = record('assistant', 'Found it.', { toolCalls: [call('c3')] });
    const turn3 = record('assistant', 'Done.');
    const [first, answer, ...rest] = historyMessages([user, turn1, turn2, turn3], false);
    expect(rest).to.deep.equal([]);
    expect(first).to.deep.equal({ id: user.id, role: 'user', content: 'go', createdAt: user.createdAt, attachedFiles: [{ name: 'a.csv', path: 'uploads/a.csv' }] });
    expect(answer).to.deep.equal({
      id: turn1.id, role: 'assistant', content: 'Found it.\n\nDone.', createdAt: turn3.createdAt,
      thoughts: [{ subject: 'Plan', description: 'look' }], toolCalls: [call('c1'), call('c2'), call('c3')],
    });
  });

  it('keeps one message per run across follow-ups, and a single-turn run as it was stored', () => {
    const records = [record('user', 'a'), record('assistant', 'one'), record('user', 'b'), record('assistant', ''), record('assistant', 'two')];
    const messages = historyMessages(records, false);
    expect(messages.map((m) => [m.role, m.content])).to.deep.equal([['user', 'a'], ['assistant', 'one'], ['user', 'b'], ['assistant', 'two']]);
    expect(messages[1]).to.not.have.any.keys('taskId', 'afterSeq', 'thoughts', 'toolCalls');
  });

  it('leaves out the run in progress of a live task, which its stream sends as the catch-up from runStartOf', () => {
    const records = [record('user', 'a'), record('assistant', 'one'), record('user', 'b'), record('assistant', 'partial run')];
    expect(historyMessages(records, true).map((m) => m.content)).to.deep.equal(['a', 'one', 'b']);
    expect(runStartOf(records)).to.equal(records[2]!.afterSeq);
    expect(runStartOf([])).to.equal(0);
  });
});
