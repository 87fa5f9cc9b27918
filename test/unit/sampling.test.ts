import { expect } from 'chai';
import { ProtocolError } from '@modelcontextprotocol/client';
import type { CreateMessageRequestParams } from '@modelcontextprotocol/client';
import { samplingArgs, samplingConversation, samplingResult } from '../../src/runtime/approvals/sampling.js';

const params = (extra: Partial<CreateMessageRequestParams> = {}): CreateMessageRequestParams => ({
  messages: [
    { role: 'user', content: { type: 'text', text: 'What is 6 x 7?' } },
    { role: 'assistant', content: { type: 'text', text: 'Let me think.' } },
    { role: 'user', content: [{ type: 'text', text: 'Just the number.' }, { type: 'text', text: 'Please.' }] },
  ],
  maxTokens: 64,
  ...extra,
});

describe('sampling', () => {
  describe('samplingArgs', () => {
    it('keeps the messages as text, the system prompt and maxTokens; joins text blocks of one message', () => {
      expect(samplingArgs(params({ systemPrompt: 'Be brief.', temperature: 0.2 }))).to.deep.equal({
        messages: [
          { role: 'user', content: { type: 'text', text: 'What is 6 x 7?' } },
          { role: 'assistant', content: { type: 'text', text: 'Let me think.' } },
          { role: 'user', content: { type: 'text', text: 'Just the number.\n\nPlease.' } },
        ],
        systemPrompt: 'Be brief.',
        maxTokens: 64,
      });
      expect(samplingArgs(params())).not.to.have.property('systemPrompt');
    });

    it('refuses image content and tools as invalid params, naming the message', () => {
      const image = params({ messages: [{ role: 'user', content: { type: 'image', data: 'AAAA', mimeType: 'image/png' } }] });
      const error = (() => { try { samplingArgs(image); } catch (err) { return err; } })();
      expect(error).to.be.instanceOf(ProtocolError).with.property('code', -32602);
      expect((error as Error).message).to.equal('Airlock answers sampling requests with text content only; message 0 has image content');
      expect(() => samplingArgs(params({ tools: [{ name: 't', inputSchema: { type: 'object' } }] }))).to.throw(ProtocolError, /does not offer tools/);
    });
  });

  it('samplingConversation gives the model one text block per message', () => {
    expect(samplingConversation(samplingArgs(params()))).to.deep.equal([
      { role: 'user', content: [{ type: 'text', text: 'What is 6 x 7?' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'Let me think.' }] },
      { role: 'user', content: [{ type: 'text', text: 'Just the number.\n\nPlease.' }] },
    ]);
  });

  describe('samplingResult', () => {
    const turn = (stopReason: 'end_turn' | 'max_tokens' | 'stop_sequence' | 'refusal') => ({
      type: 'turn_end' as const, stopReason, usage: { inputTokens: 1, outputTokens: 1 },
      content: [{ type: 'thinking' as const, thinking: 'hmm' }, { type: 'text' as const, text: '4' }, { type: 'text' as const, text: '2' }],
    });

    it('is the assistant\'s text, the model and the stop reason in MCP\'s words', () => {
      expect(samplingResult(turn('end_turn'), 'scripted')).to.deep.equal({ role: 'assistant', content: { type: 'text', text: '42' }, model: 'scripted', stopReason: 'endTurn' });
      expect(samplingResult(turn('max_tokens'), 'm').stopReason).to.equal('maxTokens');
      expect(samplingResult(turn('stop_sequence'), 'm').stopReason).to.equal('stopSequence');
      expect(samplingResult(turn('refusal'), 'm').stopReason).to.equal('refusal');
    });
  });
});
