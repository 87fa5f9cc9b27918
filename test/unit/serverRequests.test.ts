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
  // What `enter` decided, short: a delay in ms, or 'refused'.
  const admit = (budget: ServerRequestBudget, owner: string) => {
    const admission = budget.enter(owner);
    return admission.kind === 'refused' ? 'refused' : admission.delayMs;
  };

  it('lets each owner have `waiting` requests waiting, and a place frees when one leaves', () => {
    const budget = new ServerRequestBudget({ waiting: 2, burst: 100, perSecond: 1 }, () => 0);
    expect([admit(budget, 'a'), admit(budget, 'a'), admit(budget, 'a'), admit(budget, 'b')]).to.deep.equal([0, 0, 'refused', 0]);
    budget.leave('a');
    expect(admit(budget, 'a')).to.equal(0);
    expect(admit(budget, 'a')).to.equal('refused');
  });

  it('admits a burst at once, then makes each request wait its turn at the rate, and refills with time', () => {
    let clock = 0;
    const budget = new ServerRequestBudget({ waiting: 4, burst: 3, perSecond: 2 }, () => clock);
    const answered = (owner: string) => {
      const delay = admit(budget, owner);
      budget.leave(owner);
      return delay;
    };
    expect([answered('a'), answered('a'), answered('a')]).to.deep.equal([0, 0, 0]);
    // Past the burst, one request each 500 ms; each waiting request also holds a place.
    expect([admit(budget, 'a'), admit(budget, 'a')]).to.deep.equal([500, 1_000]);
    budget.leave('a');
    budget.leave('a');
    expect(answered('b'), 'another owner has its own burst').to.equal(0);
    clock = 10_000;
    expect([answered('a'), answered('a'), answered('a'), answered('a')]).to.deep.equal([0, 0, 0, 500]);
  });

  it('gives the turn back of a request withdrawn while it waited', () => {
    const budget = new ServerRequestBudget({ waiting: 4, burst: 1, perSecond: 1 }, () => 0);
    expect(admit(budget, 'a')).to.equal(0);
    budget.leave('a');
    expect(admit(budget, 'a')).to.equal(1_000);
    budget.leave('a', true);
    expect(admit(budget, 'a'), 'the withdrawn one cost nothing').to.equal(1_000);
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
