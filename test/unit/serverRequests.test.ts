import { expect } from 'chai';
import { attribute, ServerRequestBudget, ThrottledReport } from '../../src/mcp/serverRequests.js';
import type { ActiveCall, ServerRequestHandler } from '../../src/mcp/serverRequests.js';

// A handler that fails loudly: attribution never calls it.
const handler: ServerRequestHandler = {
  elicit: () => Promise.reject(new Error('unexpected elicit')),
  createMessage: () => Promise.reject(new Error('unexpected createMessage')),
};

const call = (owner: string, callId: string): ActiveCall => ({ owner, callId, handler, signal: new AbortController().signal, pause: () => () => {} });

describe('attribute (server request → call)', () => {
  const a1 = call('task-a', 'call-1');
  const a2 = call('task-a', 'call-2');
  const b1 = call('task-b', 'call-1');

  it('takes the related call when it is in flight on the connection, even with other tasks\' calls', () => {
    expect(attribute(a2, [a1, a2, b1])).to.deep.equal({ kind: 'call', call: a2 });
  });

  it('ignores a related call that is not in flight here (it ended, or belongs to another connection)', () => {
    expect(attribute(a1, [b1])).to.deep.equal({ kind: 'call', call: b1 });
    expect(attribute(a1, [])).to.deep.include({ kind: 'none' });
  });

  it('without a relation, gives the only call in flight', () => {
    expect(attribute(undefined, [b1])).to.deep.equal({ kind: 'call', call: b1 });
  });

  it('without a relation, gives the owner when all calls in flight are one task\'s, without naming a call', () => {
    expect(attribute(undefined, [a1, a2])).to.deep.equal({ kind: 'owner', calls: [a1, a2] });
  });

  it('refuses when calls of several tasks are in flight and the request names none of them', () => {
    const result = attribute(undefined, [a1, b1]);
    expect(result.kind).to.equal('none');
    expect(result.kind === 'none' && result.reason).to.match(/several tasks/);
  });

  it('refuses when no call is in flight', () => {
    const result = attribute(undefined, []);
    expect(result.kind === 'none' && result.reason).to.match(/no tool call is in flight/);
  });
});

describe('ServerRequestBudget and ThrottledReport', () => {
  it('lets each owner have `limit` requests waiting, and a place frees when one leaves', () => {
    const budget = new ServerRequestBudget(2);
    expect([budget.enter('a'), budget.enter('a'), budget.enter('a'), budget.enter('b')]).to.deep.equal([true, true, false, true]);
    budget.leave('a');
    expect(budget.enter('a')).to.equal(true);
    expect(budget.enter('a')).to.equal(false);
  });

  it('reports at most once per interval and counts what it left out', () => {
    let clock = 0;
    const seen: object[] = [];
    const report = new ThrottledReport<{ n: number }>((entry) => seen.push(entry), 10_000, () => clock);
    for (let n = 1; n <= 1_000; n++) report.offer({ n });
    clock = 10_000;
    report.offer({ n: 1_001 });
    expect(seen).to.deep.equal([{ n: 1 }, { n: 1_001, skipped: 999 }]);
  });
});
