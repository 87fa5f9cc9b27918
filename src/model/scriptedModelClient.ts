import { ModelError } from './modelClient.js';
import type { ContentBlock, ModelClient, ModelMessage, ModelRequest, ModelStreamEvent } from './modelClient.js';

/** One instruction of a script: a line of the latest user message. */
type ScriptLine =
  | { kind: 'call'; name: string; args: Record<string, unknown> }
  | { kind: 'reply'; text: string }
  | { kind: 'think'; text: string }
  | { kind: 'delay'; ms: number }
  | { kind: 'fail'; text: string };

const RESULT_PREVIEW_CHARS = 200;

/**
 * A deterministic model for tests, demos and MCP server authors. It reads the latest user message
 * line by line (ARCHITECTURE.md):
 *   /call <toolName> <json-args>   one tool call per model turn, in order
 *   /reply <text>                  lines of the final answer
 *   /think <text>                  a thought shown before the turn's output (Airlock extension)
 *   /delay <ms>                    every turn waits this long first, abortably (Airlock extension)
 *   /fail <text>                   the model provider fails with this message (Airlock extension)
 * Other lines are ignored. With no /reply, the answer lists each call and the start of its result.
 */
export class ScriptedModelClient implements ModelClient {
  readonly description = 'scripted';

  async *stream(request: ModelRequest): AsyncGenerator<ModelStreamEvent> {
    const { script, since } = latestScript(request.messages);
    const calls = script.filter((line): line is Extract<ScriptLine, { kind: 'call' }> => line.kind === 'call');
    const done = request.messages.slice(since).flatMap((m) => (m.role === 'assistant' ? m.content.filter((b) => b.type === 'tool_use') : []));
    const priorCalls = request.messages.slice(0, since).flatMap((m) => m.content.filter((b) => b.type === 'tool_use')).length;

    for (const line of script) if (line.kind === 'delay') await sleep(line.ms, request.signal);
    request.signal.throwIfAborted();
    const fail = script.find((line) => line.kind === 'fail');
    if (fail) throw new ModelError(`Scripted model failure: ${fail.text}`);

    const thoughts = script.filter((line) => line.kind === 'think');
    const content: ContentBlock[] = [];
    if (done.length === 0) {
      for (const thought of thoughts) {
        yield { type: 'thinking_delta', thinking: thought.text };
        yield { type: 'thought', subject: 'Thinking', description: thought.text };
        content.push({ type: 'thinking', thinking: thought.text });
      }
    }

    const next = calls[done.length];
    if (next) {
      const block: ContentBlock = { type: 'tool_use', id: `toolu_scripted_${priorCalls + done.length + 1}`, name: next.name, input: next.args };
      yield { type: 'turn_end', content: [...content, block], stopReason: 'tool_use', usage: usageOf(request, JSON.stringify(next.args)) };
      return;
    }

    const text = finalText(script, request.messages.slice(since));
    for (const piece of chunks(text)) {
      request.signal.throwIfAborted();
      yield { type: 'text_delta', text: piece };
    }
    content.push({ type: 'text', text });
    yield { type: 'turn_end', content, stopReason: 'end_turn', usage: usageOf(request, text) };
  }
}

/** Parses a script; throws ModelError naming the line when a /call is malformed. */
export function parseScript(text: string): ScriptLine[] {
  const lines: ScriptLine[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    const match = /^\/(call|reply|think|delay|fail)(?:\s+([\s\S]*))?$/.exec(line);
    if (!match) return;
    const rest = match[2]?.trim() ?? '';
    switch (match[1]) {
      case 'call': {
        const space = rest.search(/\s/);
        const name = space < 0 ? rest : rest.slice(0, space);
        const json = space < 0 ? '' : rest.slice(space + 1).trim();
        if (!name) throw new ModelError(`Scripted model: line ${index + 1}: /call needs a tool name`);
        let args: unknown = {};
        if (json) {
          try {
            args = JSON.parse(json);
          } catch {
            throw new ModelError(`Scripted model: line ${index + 1}: the arguments of /call ${name} are not valid JSON`);
          }
        }
        if (!args || typeof args !== 'object' || Array.isArray(args)) throw new ModelError(`Scripted model: line ${index + 1}: the arguments of /call ${name} must be a JSON object`);
        lines.push({ kind: 'call', name, args: args as Record<string, unknown> });
        break;
      }
      case 'reply': lines.push({ kind: 'reply', text: rest }); break;
      case 'think': lines.push({ kind: 'think', text: rest }); break;
      case 'delay': {
        const ms = Number(rest);
        if (!Number.isFinite(ms) || ms < 0) throw new ModelError(`Scripted model: line ${index + 1}: /delay needs a number of milliseconds`);
        lines.push({ kind: 'delay', ms });
        break;
      }
      case 'fail': lines.push({ kind: 'fail', text: rest || 'failed on purpose' }); break;
    }
  });
  return lines;
}

// The script is the newest user text (not tool results); `since` is the index of its message.
function latestScript(messages: ModelMessage[]): { script: ScriptLine[]; since: number } {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i]!;
    if (message.role !== 'user') continue;
    // Only the newest text block: a follow-up after a failed run is merged into the same user turn.
    const last = message.content.filter((b) => b.type === 'text').at(-1);
    if (last) return { script: parseScript(last.text), since: i };
  }
  return { script: [], since: 0 };
}

function finalText(script: ScriptLine[], turn: ModelMessage[]): string {
  const replies = script.filter((line) => line.kind === 'reply');
  if (replies.length) return replies.map((line) => line.text).join('\n');
  const results = new Map<string, string>();
  for (const message of turn) {
    for (const block of message.content) {
      if (block.type === 'tool_result') results.set(block.toolUseId, block.content.map((c) => (c.type === 'text' ? c.text : `[${c.mimeType}]`)).join('\n'));
    }
  }
  const calls = turn.flatMap((m) => m.content).filter((b) => b.type === 'tool_use');
  if (!calls.length) return 'Nothing to do: the scripted model acts on /call and /reply lines.';
  return calls.map((call) => `- ${call.name}: ${(results.get(call.id) ?? '').slice(0, RESULT_PREVIEW_CHARS)}`).join('\n');
}

// Several deltas per answer, so that streams show partial content as they would with a real model.
function chunks(text: string): string[] {
  const words = text.split(/(?<=\s)/);
  const out: string[] = [];
  for (let i = 0; i < words.length; i += 4) out.push(words.slice(i, i + 4).join(''));
  return out.length ? out : [''];
}

function usageOf(request: ModelRequest, output: string) {
  const input = request.system.length + JSON.stringify(request.messages).length;
  return { inputTokens: Math.ceil(input / 4), outputTokens: Math.ceil(output.length / 4) };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(timer); reject(signal.reason); };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
