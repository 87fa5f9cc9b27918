import type { CallToolResult } from '@modelcontextprotocol/client';
import type { ToolResultBlock } from '../../model/modelClient.js';

const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

/**
 * Turns an MCP tool result into what the model receives: text and images as they are, embedded
 * resources as their text (or a note for binary ones), resource links and audio as notes, and
 * structuredContent as JSON when there is no text block. Capped at `limitChars`.
 */
export function toolResultBlocks(result: CallToolResult, limitChars: number): ToolResultBlock[] {
  const blocks: ToolResultBlock[] = [];
  for (const item of result.content ?? []) {
    switch (item.type) {
      case 'text':
        blocks.push({ type: 'text', text: item.text });
        break;
      case 'image':
        if (IMAGE_TYPES.has(item.mimeType)) blocks.push({ type: 'image', data: item.data, mimeType: item.mimeType });
        else blocks.push({ type: 'text', text: `[image of type ${item.mimeType}, ${base64Bytes(item.data)} bytes, not shown]` });
        break;
      case 'audio':
        blocks.push({ type: 'text', text: `[audio of type ${item.mimeType}, ${base64Bytes(item.data)} bytes, not shown]` });
        break;
      case 'resource': {
        const resource = item.resource;
        if ('text' in resource && typeof resource.text === 'string') blocks.push({ type: 'text', text: `Resource ${resource.uri}${resource.mimeType ? ` (${resource.mimeType})` : ''}:\n${resource.text}` });
        else blocks.push({ type: 'text', text: `[binary resource ${resource.uri}${resource.mimeType ? ` (${resource.mimeType})` : ''}, ${'blob' in resource && typeof resource.blob === 'string' ? base64Bytes(resource.blob) : 0} bytes]` });
        break;
      }
      case 'resource_link':
        blocks.push({ type: 'text', text: `Resource link: ${item.name}${item.title ? ` "${item.title}"` : ''} ${item.uri}${item.mimeType ? ` (${item.mimeType})` : ''}${item.description ? ` — ${item.description}` : ''}` });
        break;
      default:
        blocks.push({ type: 'text', text: `[unsupported content of type ${(item as { type: string }).type}]` });
    }
  }
  // Servers SHOULD put the serialized structured result in a text block too (MCP 2025-06-18); when
  // their text says something else (a summary), it is what the model reads, so JSON is added only
  // when no text block carries anything.
  if (result.structuredContent !== undefined && !blocks.some((block) => block.type === 'text')) {
    blocks.push({ type: 'text', text: JSON.stringify(result.structuredContent) });
  }
  if (!blocks.length) blocks.push({ type: 'text', text: result.isError ? 'The tool failed without a message.' : '(no output)' });
  return capBlocks(blocks, limitChars);
}

function capBlocks(blocks: ToolResultBlock[], limitChars: number): ToolResultBlock[] {
  let left = limitChars;
  let dropped = 0;
  const out: ToolResultBlock[] = [];
  for (const block of blocks) {
    if (block.type !== 'text') {
      out.push(block);
    } else if (block.text.length <= left) {
      out.push(block);
      left -= block.text.length;
    } else {
      if (left > 0) out.push({ type: 'text', text: block.text.slice(0, left) });
      dropped += block.text.length - left;
      left = 0;
    }
  }
  if (dropped) out.push({ type: 'text', text: `[… ${dropped} more characters of output truncated at ${limitChars} characters]` });
  return out;
}

function base64Bytes(data: string): number {
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  return Math.floor((data.length * 3) / 4) - padding;
}
