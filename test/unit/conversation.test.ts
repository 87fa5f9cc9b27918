import { expect } from 'chai';
import { conversationFromMessages, MAX_LISTED_FILES, userText } from '../../src/runtime/runs/conversation.js';
import type { MessageRecord } from '../../src/store/store.js';

let counter = 0;
function message(role: MessageRecord['role'], content: string, extra: Partial<MessageRecord> = {}): MessageRecord {
  counter++;
  return { id: `m${counter}`, taskId: 't1', role, content, createdAt: new Date(0).toISOString(), afterSeq: 0, ...extra };
}

describe('conversationFromMessages', () => {
  it('keeps a plain exchange as alternating user and assistant messages', () => {
    expect(conversationFromMessages([message('user', 'hi'), message('assistant', 'hello'), message('user', 'bye')])).to.deep.equal([
      { role: 'user', content: [{ type: 'text', text: 'hi' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'hello' }] },
      { role: 'user', content: [{ type: 'text', text: 'bye' }] },
    ]);
  });

  it('merges consecutive user messages into one', () => {
    expect(conversationFromMessages([message('user', 'first'), message('user', 'second')])).to.deep.equal([
      { role: 'user', content: [{ type: 'text', text: 'first' }, { type: 'text', text: 'second' }] },
    ]);
  });

  it('follows an assistant turn with tool calls by a user message of their results, isError for non-success', () => {
    const conversation = conversationFromMessages([
      message('user', 'do it'),
      message('assistant', 'calling', {
        toolCalls: [
          { callId: 'c1', toolName: 'ok_tool', status: 'success', args: { a: 1 }, output: 'fine' },
          { callId: 'c2', toolName: 'bad_tool', status: 'error', args: {}, output: 'broken' },
          { callId: 'c3', toolName: 'slow_tool', status: 'cancelled', args: {} },
        ],
      }),
      message('assistant', 'done'),
    ]);
    expect(conversation).to.deep.equal([
      { role: 'user', content: [{ type: 'text', text: 'do it' }] },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'calling' },
          { type: 'tool_use', id: 'c1', name: 'ok_tool', input: { a: 1 } },
          { type: 'tool_use', id: 'c2', name: 'bad_tool', input: {} },
          { type: 'tool_use', id: 'c3', name: 'slow_tool', input: {} },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', toolUseId: 'c1', content: [{ type: 'text', text: 'fine' }], isError: false },
          { type: 'tool_result', toolUseId: 'c2', content: [{ type: 'text', text: 'broken' }], isError: true },
          { type: 'tool_result', toolUseId: 'c3', content: [{ type: 'text', text: 'The call was cancelled.' }], isError: true },
        ],
      },
      { role: 'assistant', content: [{ type: 'text', text: 'done' }] },
    ]);
  });

  it('merges a follow-up into the user message that holds the tool results', () => {
    const conversation = conversationFromMessages([
      message('user', 'go'),
      message('assistant', '', { toolCalls: [{ callId: 'c1', toolName: 't', status: 'success', args: {}, output: 'r' }] }),
      message('user', 'again'),
    ]);
    expect(conversation.map((m) => m.role)).to.deep.equal(['user', 'assistant', 'user']);
    expect(conversation[2]!.content.map((b) => b.type)).to.deep.equal(['tool_result', 'text']);
  });

  it('keeps roles alternating when two assistant messages follow each other', () => {
    const conversation = conversationFromMessages([message('user', 'q'), message('assistant', 'a1'), message('assistant', 'a2')]);
    const roles = conversation.map((m) => m.role);
    expect(roles).to.deep.equal(['user', 'assistant', 'user', 'assistant']);
  });

  it('skips assistant messages with neither text nor tool calls', () => {
    const conversation = conversationFromMessages([
      message('user', 'q'),
      message('assistant', '', { thoughts: [{ subject: 'Thinking', description: 'hmm' }] }),
      message('assistant', 'answer'),
    ]);
    expect(conversation).to.deep.equal([
      { role: 'user', content: [{ type: 'text', text: 'q' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'answer' }] },
    ]);
  });

  it('lists attached files before the user text', () => {
    const conversation = conversationFromMessages([
      message('user', 'summarise these', { attachedFiles: [{ name: 'a.txt', path: 'uploads/a.txt' }, { name: 'b.csv', path: 'uploads/b.csv' }] }),
    ]);
    expect(conversation).to.deep.equal([
      { role: 'user', content: [{ type: 'text', text: 'Uploaded files:\n- /workspace/uploads/a.txt\n- /workspace/uploads/b.csv\n\nsummarise these' }] },
    ]);
  });
});

describe('userText', () => {
  it('returns the message alone when there are no files', () => {
    expect(userText('hello')).to.equal('hello');
    expect(userText('hello', [])).to.equal('hello');
  });

  it('puts the list of file paths as the agent sees them first, then a blank line, then the message', () => {
    expect(userText('go', [{ name: 'x', path: 'uploads/x' }])).to.equal('Uploaded files:\n- /workspace/uploads/x\n\ngo');
  });

  it('lists at most MAX_LISTED_FILES files and says how many more there are', () => {
    const files = Array.from({ length: MAX_LISTED_FILES + 3 }, (_, i) => ({ name: `f${i}`, path: `uploads/a/f${i}` }));
    const lines = userText('go', files).split('\n');
    expect(lines.filter((line) => line.startsWith('- /workspace/uploads/a/f'))).to.have.length(MAX_LISTED_FILES);
    expect(lines).to.include('- … and 3 more (list /workspace/uploads to see them all)');
    expect(lines.at(-1)).to.equal('go');
  });
});
