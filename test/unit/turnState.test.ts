import { expect } from 'chai';
import { emptyTurnState, foldEvents } from '../../src/runtime/runs/turnState.js';
import type { EventRecord } from '../../src/store/store.js';

/** Events of one task, numbered from 1, one second apart. */
function events(...items: [type: string, data: Record<string, unknown>][]): EventRecord[] {
  return items.map(([type, data], index) => ({
    taskId: 't1', seq: index + 1, type, data, createdAt: new Date(Date.UTC(2025, 0, 1, 0, 0, index)).toISOString(),
  }));
}

describe('foldEvents', () => {
  it('gives the empty state for no events', () => {
    expect(foldEvents([])).to.deep.equal(emptyTurnState());
  });

  it('accumulates partial content deltas', () => {
    const state = foldEvents(events(['content', { text: 'Hel', isPartial: true }], ['content', { text: 'lo', isPartial: true }]));
    expect(state.content).to.equal('Hello');
  });

  it('replaces the partial text of a message with its final content', () => {
    const state = foldEvents(events(
      ['content', { text: 'Hel', isPartial: true }],
      ['content', { text: 'lo', isPartial: true }],
      ['content', { text: 'Hello', isPartial: false }],
    ));
    expect(state.content).to.equal('Hello');
  });

  it('joins several assistant texts with a blank line, the partial one last', () => {
    const state = foldEvents(events(
      ['content', { text: 'First', isPartial: true }],
      ['content', { text: 'First', isPartial: false }],
      ['content', { text: 'Second', isPartial: false }],
      ['content', { text: 'Thi', isPartial: true }],
    ));
    expect(state.content).to.equal('First\n\nSecond\n\nThi');
  });

  it('collects thoughts in order', () => {
    const state = foldEvents(events(
      ['thought', { subject: 'Plan', description: 'look around' }],
      ['content', { text: 'x', isPartial: true }],
      ['thought', { subject: 'Check', description: 'verify' }],
    ));
    expect(state.thoughts).to.deep.equal([{ subject: 'Plan', description: 'look around' }, { subject: 'Check', description: 'verify' }]);
  });

  it('records a tool call and sets its status and output from its result', () => {
    const state = foldEvents(events(
      ['tool_call', { callId: 'c1', toolName: 'search', server: 'web', status: 'executing', args: { q: 'cats' } }],
      ['tool_result', { callId: 'c1', status: 'success', output: 'found 3' }],
    ));
    expect(state.toolCalls).to.deep.equal([{ callId: 'c1', toolName: 'search', server: 'web', status: 'success', args: { q: 'cats' }, output: 'found 3' }]);
  });

  it('keeps the arguments when a later tool_call event only updates the status', () => {
    const state = foldEvents(events(
      ['tool_call', { callId: 'c1', toolName: 'deploy', status: 'awaiting_approval', args: { env: 'prod' } }],
      ['tool_call', { callId: 'c1', toolName: 'deploy', status: 'executing' }],
    ));
    expect(state.toolCalls).to.deep.equal([{ callId: 'c1', toolName: 'deploy', status: 'executing', args: { env: 'prod' } }]);
  });

  it('keeps calls apart by callId, in the order they were first seen', () => {
    const state = foldEvents(events(
      ['tool_call', { callId: 'a', toolName: 'one', status: 'executing', args: {} }],
      ['tool_call', { callId: 'b', toolName: 'two', status: 'executing', args: {} }],
      ['tool_result', { callId: 'b', status: 'error', output: 'boom' }],
      ['tool_result', { callId: 'a', status: 'success', output: 'fine' }],
    ));
    expect(state.toolCalls.map((c) => [c.callId, c.status, c.output])).to.deep.equal([['a', 'success', 'fine'], ['b', 'error', 'boom']]);
  });

  it('sets updatedAt to the createdAt of the last event', () => {
    const list = events(['status', { status: 'running' }], ['content', { text: 'x', isPartial: true }], ['status', { status: 'completed' }]);
    expect(foldEvents(list).updatedAt).to.equal(list[2]!.createdAt);
  });

  it('lists input requests that have no input_resolved yet, oldest first, with when they were made', () => {
    const state = foldEvents(events(
      ['input_required', { requestId: 'inp_1', server: 'crm', mode: 'form', message: 'Name?', schema: { type: 'object' } }],
      ['input_required', { requestId: 'inp_2', server: 'crm', mode: 'url', message: 'Sign in', url: 'https://example.com' }],
      ['input_required', { requestId: 'inp_3', server: 'docs', mode: 'form', message: 'Sure?', schema: { type: 'object' } }],
      ['input_resolved', { requestId: 'inp_2', action: 'accept', answeredBy: 'system' }],
    ));
    expect(state.pendingInputs).to.deep.equal([
      { request: { requestId: 'inp_1', server: 'crm', mode: 'form', message: 'Name?', schema: { type: 'object' } }, requestedAt: '2025-01-01T00:00:00.000Z' },
      { request: { requestId: 'inp_3', server: 'docs', mode: 'form', message: 'Sure?', schema: { type: 'object' } }, requestedAt: '2025-01-01T00:00:02.000Z' },
    ]);
  });
});

