import type { ContentBlock, ModelMessage, ToolResultBlock } from '../../model/modelClient.js';
import { UPLOADS_DIR, WORKSPACE_MOUNT } from '../../sandbox/workspaces.js';
import type { AttachedFile, MessageRecord } from '../../store/store.js';

/** Appends blocks as a user message, merging with a trailing user message (roles must alternate). */
export function pushUser(conversation: ModelMessage[], blocks: ContentBlock[]): void {
  const last = conversation.at(-1);
  if (last?.role === 'user') last.content.push(...blocks);
  else conversation.push({ role: 'user', content: blocks });
}

/** The most uploaded files a user message lists to the model one by one. */
export const MAX_LISTED_FILES = 100;

/**
 * The text a user message gives the model: the list of its files first (as the agent's processes
 * see them, under /workspace; at most MAX_LISTED_FILES of them), then the message.
 */
export function userText(content: string, attachedFiles?: AttachedFile[]): string {
  if (!attachedFiles?.length) return content;
  const lines = attachedFiles.slice(0, MAX_LISTED_FILES).map((file) => `- ${WORKSPACE_MOUNT}/${file.path}`);
  const rest = attachedFiles.length - MAX_LISTED_FILES;
  if (rest > 0) lines.push(`- … and ${rest} more (list ${WORKSPACE_MOUNT}/${UPLOADS_DIR} to see them all)`);
  return `Uploaded files:\n${lines.join('\n')}\n\n${content}`;
}

/**
 * Rebuilds the model's view of a conversation from stored messages: after a restart or an expired
 * session, the model sees the same turns, tool calls and (scrubbed) results it saw before.
 */
export function conversationFromMessages(messages: MessageRecord[]): ModelMessage[] {
  const conversation: ModelMessage[] = [];
  for (const message of messages) {
    if (message.role === 'user') {
      pushUser(conversation, [{ type: 'text', text: userText(message.content, message.attachedFiles) }]);
      continue;
    }
    const calls = message.toolCalls ?? [];
    const blocks: ContentBlock[] = [];
    if (message.content) blocks.push({ type: 'text', text: message.content });
    for (const call of calls) blocks.push({ type: 'tool_use', id: call.callId, name: call.toolName, input: call.args });
    if (!blocks.length) continue;
    if (conversation.at(-1)?.role !== 'user') pushUser(conversation, [{ type: 'text', text: '(continue)' }]);
    conversation.push({ role: 'assistant', content: blocks });
    if (calls.length) {
      pushUser(conversation, calls.map((call) => ({
        type: 'tool_result' as const,
        toolUseId: call.callId,
        content: [{ type: 'text' as const, text: call.output ?? (call.status === 'cancelled' ? 'The call was cancelled.' : '') }],
        isError: call.status !== 'success',
      })));
    }
  }
  return conversation;
}

/** The text of a tool result, for events and history: images are named, not inlined. */
export function toolResultText(blocks: ToolResultBlock[]): string {
  return blocks.map((block) => (block.type === 'text' ? block.text : `[image ${block.mimeType}]`)).join('\n');
}
