import { expect } from 'chai';
import type { CallToolResult } from '@modelcontextprotocol/client';
import { toolResultBlocks } from '../../src/runtime/tools/toolResults.js';

const LIMIT = 10_000;
// 8 bytes of PNG signature, base64 (12 characters, no padding).
const PNG_DATA = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]).toString('base64');

describe('toolResults', () => {
  describe('#toolResultBlocks()', () => {
    describe('content types', () => {
      it('passes text blocks through in order', () => {
        const result: CallToolResult = { content: [{ type: 'text', text: 'one' }, { type: 'text', text: 'two' }] };
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: 'one' }, { type: 'text', text: 'two' }]);
      });

      for (const mimeType of ['image/png', 'image/jpeg', 'image/gif', 'image/webp']) {
        it(`keeps an ${mimeType} image as an image`, () => {
          const result: CallToolResult = { content: [{ type: 'image', data: PNG_DATA, mimeType }] };
          expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'image', data: PNG_DATA, mimeType }]);
        });
      }

      it('turns an image of a type the model cannot take into a note with its type and size', () => {
        const data = Buffer.alloc(300).toString('base64');
        const [block, ...rest] = toolResultBlocks({ content: [{ type: 'image', data, mimeType: 'image/tiff' }] }, LIMIT);
        expect(rest).to.deep.equal([]);
        expect(block).to.deep.equal({ type: 'text', text: '[image of type image/tiff, 300 bytes, not shown]' });
      });

      it('turns audio into a note with its type and size', () => {
        const data = Buffer.alloc(30).toString('base64');
        expect(toolResultBlocks({ content: [{ type: 'audio', data, mimeType: 'audio/wav' }] }, LIMIT)).to.deep.equal([
          { type: 'text', text: '[audio of type audio/wav, 30 bytes, not shown]' },
        ]);
      });

      it('reports the decoded size of base64 data with padding', () => {
        // 'hi' is 2 bytes, base64 'aGk=' is 4 characters; 'h' is 1 byte, 'aA=='.
        const two = toolResultBlocks({ content: [{ type: 'audio', data: Buffer.from('hi').toString('base64'), mimeType: 'audio/wav' }] }, LIMIT);
        const one = toolResultBlocks({ content: [{ type: 'audio', data: Buffer.from('h').toString('base64'), mimeType: 'audio/wav' }] }, LIMIT);
        expect(two).to.deep.equal([{ type: 'text', text: '[audio of type audio/wav, 2 bytes, not shown]' }]);
        expect(one).to.deep.equal([{ type: 'text', text: '[audio of type audio/wav, 1 bytes, not shown]' }]);
      });

      it('turns an embedded text resource into text naming its uri and mime type', () => {
        const result: CallToolResult = { content: [{ type: 'resource', resource: { uri: 'file:///notes.md', mimeType: 'text/markdown', text: '# Notes\nhello' } }] };
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: 'Resource file:///notes.md (text/markdown):\n# Notes\nhello' }]);
      });

      it('turns an embedded text resource without a mime type into text naming its uri', () => {
        const result: CallToolResult = { content: [{ type: 'resource', resource: { uri: 'mem://a', text: 'body' } }] };
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: 'Resource mem://a:\nbody' }]);
      });

      it('turns a blob resource into a note with its uri, mime type and size, never its bytes', () => {
        const blob = Buffer.alloc(3_000, 7).toString('base64');
        const result: CallToolResult = { content: [{ type: 'resource', resource: { uri: 'file:///report.pdf', mimeType: 'application/pdf', blob } }] };
        const blocks = toolResultBlocks(result, LIMIT);
        expect(blocks).to.deep.equal([{ type: 'text', text: '[binary resource file:///report.pdf (application/pdf), 3000 bytes]' }]);
        expect(JSON.stringify(blocks)).not.to.include(blob.slice(0, 40));
      });

      it('turns a resource link into a note with name, title, uri, mime type and description', () => {
        const result: CallToolResult = {
          content: [{ type: 'resource_link', uri: 'https://example.com/r/1', name: 'report', title: 'Q3 report', mimeType: 'application/pdf', description: 'the numbers' }],
        };
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: 'Resource link: report "Q3 report" https://example.com/r/1 (application/pdf) — the numbers' }]);
      });

      it('turns a bare resource link into a note with name and uri', () => {
        const result: CallToolResult = { content: [{ type: 'resource_link', uri: 'file:///x.txt', name: 'x.txt' }] };
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: 'Resource link: x.txt file:///x.txt' }]);
      });

      it('turns a content type it does not know into a note instead of failing', () => {
        const result = { content: [{ type: 'hologram', data: 'x' }] } as unknown as CallToolResult;
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: '[unsupported content of type hologram]' }]);
      });
    });

    describe('structuredContent', () => {
      it('is added as JSON when there is no text block', () => {
        const result: CallToolResult = { content: [], structuredContent: { city: 'Lisbon', temperatureC: 21.5 } };
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: '{"city":"Lisbon","temperatureC":21.5}' }]);
      });

      it('is added as JSON next to an image', () => {
        const result: CallToolResult = { content: [{ type: 'image', data: PNG_DATA, mimeType: 'image/png' }], structuredContent: { ok: true } };
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'image', data: PNG_DATA, mimeType: 'image/png' }, { type: 'text', text: '{"ok":true}' }]);
      });

      it('is added when the result has no content array at all', () => {
        const result = { structuredContent: { n: 1 } } as unknown as CallToolResult;
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: '{"n":1}' }]);
      });

      it('is not added when a text block is there (the text is what the model reads)', () => {
        const result: CallToolResult = { content: [{ type: 'text', text: 'It is 21.5 °C in Lisbon.' }], structuredContent: { city: 'Lisbon' } };
        expect(toolResultBlocks(result, LIMIT)).to.deep.equal([{ type: 'text', text: 'It is 21.5 °C in Lisbon.' }]);
      });
    });

    describe('empty results', () => {
      it('says (no output) for a successful result without content', () => {
        expect(toolResultBlocks({ content: [] }, LIMIT)).to.deep.equal([{ type: 'text', text: '(no output)' }]);
      });

      it('says the tool failed for an error result without content', () => {
        const [block] = toolResultBlocks({ content: [], isError: true }, LIMIT);
        expect(block).to.deep.equal({ type: 'text', text: 'The tool failed without a message.' });
      });

      it('keeps the message of an error result that has one', () => {
        expect(toolResultBlocks({ content: [{ type: 'text', text: 'nope' }], isError: true }, LIMIT)).to.deep.equal([{ type: 'text', text: 'nope' }]);
      });
    });

    describe('the size cap', () => {
      it('keeps text within the limit whole', () => {
        const text = 'x'.repeat(100);
        expect(toolResultBlocks({ content: [{ type: 'text', text }] }, 100)).to.deep.equal([{ type: 'text', text }]);
      });

      it('cuts a text over the limit and says so', () => {
        expect(toolResultBlocks({ content: [{ type: 'text', text: 'a'.repeat(150) }] }, 100)).to.deep.equal([
          { type: 'text', text: 'a'.repeat(100) },
          { type: 'text', text: '[… 50 more characters of output truncated at 100 characters]' },
        ]);
      });

      it('counts the limit over all text blocks together', () => {
        const blocks = toolResultBlocks({ content: [{ type: 'text', text: 'a'.repeat(60) }, { type: 'text', text: 'b'.repeat(60) }, { type: 'text', text: 'c'.repeat(60) }] }, 100);
        expect(blocks).to.deep.equal([
          { type: 'text', text: 'a'.repeat(60) },
          { type: 'text', text: 'b'.repeat(40) },
          { type: 'text', text: '[… 80 more characters of output truncated at 100 characters]' },
        ]);
      });

      it('keeps images, also those after the text ran out', () => {
        const image = { type: 'image' as const, data: PNG_DATA, mimeType: 'image/png' };
        const blocks = toolResultBlocks({ content: [image, { type: 'text', text: 'a'.repeat(150) }, image] }, 100);
        expect(blocks).to.deep.equal([image, { type: 'text', text: 'a'.repeat(100) }, image, { type: 'text', text: '[… 50 more characters of output truncated at 100 characters]' }]);
      });

      it('says the output was truncated when the text dropped starts exactly at the limit', () => {
        const blocks = toolResultBlocks({ content: [{ type: 'text', text: 'a'.repeat(100) }, { type: 'text', text: 'dropped' }] }, 100);
        const all = blocks.map((block) => (block.type === 'text' ? block.text : '')).join('\n');
        expect(all).to.include('a'.repeat(100));
        expect(all).not.to.include('dropped');
        expect(all).to.match(/truncated at 100 characters/);
      });

      it('keeps an image that follows text dropped at the limit', () => {
        const image = { type: 'image' as const, data: PNG_DATA, mimeType: 'image/png' };
        const blocks = toolResultBlocks({ content: [{ type: 'text', text: 'a'.repeat(100) }, { type: 'text', text: 'dropped' }, image] }, 100);
        expect(blocks).to.deep.include(image);
      });
    });
  });
});
