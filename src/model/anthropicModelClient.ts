import Anthropic from '@anthropic-ai/sdk';
import type { Logger } from '@anthropic-ai/sdk/client';
import type {
  ContentBlockParam,
  ImageBlockParam,
  MessageCreateParamsStreaming,
  MessageParam,
  RawMessageStreamEvent,
  TextBlockParam,
  Tool,
} from '@anthropic-ai/sdk/resources/messages/messages';
import {
  ModelError,
  thoughtFromThinking,
  type ContentBlock,
  type ModelClient,
  type ModelMessage,
  type ModelRequest,
  type ModelStreamEvent,
  type StopReason,
  type ToolResultBlock,
  type Usage,
} from './modelClient.js';
import { SdkWarnings } from './sdkLogger.js';

export interface AnthropicModelClientOptions {
  apiKey: string;
  baseURL?: string;
  model: string;
  maxTokens: number;
  thinkingBudgetTokens?: number;
  /** Retries after the first attempt; default 4. */
  maxRetries?: number;
  /** First backoff delay; doubles per retry. Default 500. */
  retryBaseDelayMs?: number;
  /** Upper bound for any wait, including a server's retry-after. Default 30 000. */
  retryMaxDelayMs?: number;
  /** Injected by tests to record delays instead of waiting; must reject when `signal` aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Where the SDK's own log lines go (it logs unparseable stream chunks); default console. */
  logger?: Logger;
  /**
   * Where the warnings the SDK prints itself go (a deprecated model): share one among the clients
   * of a process. Default: this client's own, each said once through `logger.warn` (or console.warn).
   */
  warnings?: SdkWarnings;
}

/** Why an attempt failed, and whether another attempt could help. */
interface Failure {
  retryable: boolean;
  /** Short, for the `retrying` event. */
  reason: string;
  /** Safe to show: never contains request headers. */
  message: string;
  retryAfterMs?: number;
}

type TurnEnd = Extract<ModelStreamEvent, { type: 'turn_end' }>;

/** A block being assembled from stream events, keyed by its index. */
type Pending =
  | { type: 'text'; text: string }
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'tool_use'; id: string; name: string; json: string }
  | { type: 'ignored' };

class MalformedStreamError extends Error {}

const IMAGE_TYPES = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);
const MAX_PROVIDER_MESSAGE = 500;

export class AnthropicModelClient implements ModelClient {
  readonly description: string;
  readonly #client: Anthropic;
  readonly #apiKey: string;
  readonly #model: string;
  readonly #maxTokens: number;
  readonly #thinkingBudgetTokens: number | undefined;
  readonly #maxRetries: number;
  readonly #retryBaseDelayMs: number;
  readonly #retryMaxDelayMs: number;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly #warnings: SdkWarnings;

  constructor(options: AnthropicModelClientOptions) {
    this.#apiKey = options.apiKey;
    this.#model = options.model;
    this.#maxTokens = options.maxTokens;
    this.#thinkingBudgetTokens = options.thinkingBudgetTokens;
    this.#maxRetries = options.maxRetries ?? 4;
    this.#retryBaseDelayMs = options.retryBaseDelayMs ?? 500;
    this.#retryMaxDelayMs = options.retryMaxDelayMs ?? 30_000;
    this.#sleep = options.sleep ?? abortableSleep;
    this.description = `anthropic:${options.model}`;
    const { logger } = options;
    this.#warnings = options.warnings ?? new SdkWarnings((message) => (logger ? logger.warn(message) : console.warn(message)));
    // The SDK's own retries are invisible to the caller; ours emit `retrying` events.
    this.#client = new Anthropic({
      apiKey: options.apiKey,
      ...(options.baseURL !== undefined && { baseURL: options.baseURL }),
      maxRetries: 0,
      ...(options.logger !== undefined && { logger: options.logger }),
    });
  }

  async *stream(request: ModelRequest): AsyncGenerator<ModelStreamEvent, void, undefined> {
    const { signal } = request;
    signal.throwIfAborted();
    const params = this.#params(request);
    for (let attempt = 0; ; attempt++) {
      const progress = { yielded: false };
      try {
        yield* this.#attempt(params, signal, progress);
        return;
      } catch (error) {
        // Cancel is not failure: callers tell them apart by the error's type.
        signal.throwIfAborted();
        const failure = this.#classify(error);
        // Once output went out, a retry would repeat it to the caller, so the failure is final.
        if (!failure.retryable || progress.yielded || attempt >= this.#maxRetries) {
          const gaveUp = failure.retryable && !progress.yielded && attempt > 0 ? ` (gave up after ${attempt} ${attempt === 1 ? 'retry' : 'retries'})` : '';
          throw new ModelError(this.#scrub(failure.message + gaveUp), { cause: error });
        }
        const delayMs = this.#delay(attempt + 1, failure.retryAfterMs);
        yield { type: 'retrying', attempt: attempt + 1, delayMs, reason: failure.reason };
        await this.#sleep(delayMs, signal);
      }
    }
  }

  async *#attempt(
    params: MessageCreateParamsStreaming,
    signal: AbortSignal,
    progress: { yielded: boolean },
  ): AsyncGenerator<ModelStreamEvent, void, undefined> {
    const events = await this.#warnings.capture(params.model, () => this.#client.messages.create(params, { signal }));
    const blocks = new Map<number, Pending>();
    const usage = { input: 0, cacheCreation: 0, cacheRead: 0, output: 0 };
    let stopReason: StopReason = 'end_turn';
    let stopped = false;

    // Returning from the loop early (consumer stopped) makes the SDK abort the HTTP call.
    for await (const event of events as AsyncIterable<RawMessageStreamEvent>) {
      if (stopped) throw new MalformedStreamError('event after message_stop');
      switch (event.type) {
        case 'message_start': {
          const u = event.message.usage;
          usage.input = u.input_tokens ?? 0;
          usage.cacheCreation = u.cache_creation_input_tokens ?? 0;
          usage.cacheRead = u.cache_read_input_tokens ?? 0;
          usage.output = u.output_tokens ?? 0;
          break;
        }
        case 'content_block_start': {
          const b = event.content_block;
          if (b.type === 'text') blocks.set(event.index, { type: 'text', text: b.text ?? '' });
          else if (b.type === 'thinking') blocks.set(event.index, { type: 'thinking', thinking: b.thinking ?? '', signature: b.signature ?? '' });
          else if (b.type === 'tool_use') blocks.set(event.index, { type: 'tool_use', id: b.id, name: b.name, json: '' });
          // redacted_thinking and server-side tool blocks have no provider-neutral form.
          else blocks.set(event.index, { type: 'ignored' });
          break;
        }
        case 'content_block_delta': {
          const block = blocks.get(event.index);
          if (!block) throw new MalformedStreamError(`delta for unknown block ${event.index}`);
          const d = event.delta;
          if (d.type === 'text_delta' && block.type === 'text') {
            block.text += d.text;
            if (d.text) {
              progress.yielded = true;
              yield { type: 'text_delta', text: d.text };
            }
          } else if (d.type === 'thinking_delta' && block.type === 'thinking') {
            block.thinking += d.thinking;
            if (d.thinking) {
              progress.yielded = true;
              yield { type: 'thinking_delta', thinking: d.thinking };
            }
          } else if (d.type === 'signature_delta' && block.type === 'thinking') {
            block.signature += d.signature;
          } else if (d.type === 'input_json_delta' && block.type === 'tool_use') {
            block.json += d.partial_json;
          }
          break;
        }
        case 'content_block_stop': {
          const block = blocks.get(event.index);
          if (block?.type === 'thinking' && block.thinking.trim()) {
            progress.yielded = true;
            yield { type: 'thought', ...thoughtFromThinking(block.thinking) };
          }
          break;
        }
        case 'message_delta': {
          stopReason = mapStopReason(event.delta.stop_reason);
          const u = event.usage;
          // message_delta usage is cumulative; its input fields are often absent.
          usage.input = u.input_tokens ?? usage.input;
          usage.cacheCreation = u.cache_creation_input_tokens ?? usage.cacheCreation;
          usage.cacheRead = u.cache_read_input_tokens ?? usage.cacheRead;
          usage.output = u.output_tokens ?? usage.output;
          break;
        }
        case 'message_stop':
          stopped = true;
          break;
      }
    }
    // The SDK ends its iterator quietly when the request is aborted; surface the abort.
    signal.throwIfAborted();
    if (!stopped) throw new MalformedStreamError('stream ended without message_stop');

    const content = [...blocks.entries()].sort(([a], [b]) => a - b).flatMap(([, block]) => toContentBlock(block));
    const turnUsage: Usage = { inputTokens: usage.input + usage.cacheCreation + usage.cacheRead, outputTokens: usage.output };
    const end: TurnEnd = { type: 'turn_end', content, stopReason, usage: turnUsage };
    yield end;
  }

  #params(request: ModelRequest): MessageCreateParamsStreaming {
    const params: MessageCreateParamsStreaming = {
      model: this.#model,
      max_tokens: Math.min(request.maxTokens ?? this.#maxTokens, this.#maxTokens),
      messages: request.messages.map(toMessageParam),
      stream: true,
    };
    if (request.system) params.system = request.system;
    if (request.tools.length > 0) {
      params.tools = request.tools.map(
        (t): Tool => ({ name: t.name, description: t.description, input_schema: t.inputSchema as Tool.InputSchema }),
      );
    }
    // Thinking needs room beyond its budget; a request that asks for fewer tokens goes without it.
    if (this.#thinkingBudgetTokens !== undefined && (request.maxTokens === undefined || this.#thinkingBudgetTokens < params.max_tokens)) {
      params.thinking = { type: 'enabled', budget_tokens: this.#thinkingBudgetTokens };
    }
    return params;
  }

  #classify(error: unknown): Failure {
    // A truncated or garbled stream is almost always a dropped connection or a misbehaving
    // proxy, not a property of the request, so it is retried like a connection error
    // (still only while nothing has been yielded).
    if (error instanceof MalformedStreamError || error instanceof SyntaxError) {
      return { retryable: true, reason: 'malformed response stream', message: `Model provider sent a malformed response stream (${error.message})` };
    }
    if (error instanceof Anthropic.APIConnectionError) {
      const timedOut = error instanceof Anthropic.APIConnectionTimeoutError;
      const reason = timedOut ? 'connection timed out' : 'connection error';
      return { retryable: true, reason, message: `Model provider ${reason}: ${causeMessage(error)}` };
    }
    if (error instanceof Anthropic.APIError) {
      const status = error.status;
      const type = error.type ?? undefined;
      const label = status ?? type ?? 'unknown';
      const detail = providerMessage(error);
      const message = `Model provider error (${label}): ${detail}`;
      const retryAfterMs = status !== undefined ? retryAfter(error.headers) : undefined;
      const withDelay = retryAfterMs === undefined ? {} : { retryAfterMs };
      if (status === 529 || type === 'overloaded_error') return { retryable: true, reason: 'overloaded', message, ...withDelay };
      if (status === 429 || type === 'rate_limit_error') return { retryable: true, reason: `rate limited (${status ?? 429})`, message, ...withDelay };
      if ((status !== undefined && status >= 500) || (status === undefined && type === 'api_error')) {
        return { retryable: true, reason: `server error (${status ?? type})`, message, ...withDelay };
      }
      return { retryable: false, reason: 'error', message };
    }
    // A socket reset while reading the body comes from undici, not wrapped by the SDK.
    if (error instanceof Error && isSocketError(error)) {
      return { retryable: true, reason: 'connection error', message: `Model provider connection error: ${error.message}` };
    }
    const text = error instanceof Error ? error.message : String(error);
    return { retryable: false, reason: 'error', message: `Model provider call failed: ${text}` };
  }

  #delay(retry: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(Math.max(0, retryAfterMs), this.#retryMaxDelayMs);
    const exponential = Math.min(this.#retryBaseDelayMs * 2 ** (retry - 1), this.#retryMaxDelayMs);
    // Up to 25% below the nominal delay, so clients that failed together spread out.
    return Math.round(exponential * (1 - Math.random() * 0.25));
  }

  /** Belt and braces: a proxy may echo the credential back in an error body. */
  #scrub(message: string): string {
    // A very short (test) key would redact ordinary words; real keys are long.
    return this.#apiKey.length >= 8 ? message.split(this.#apiKey).join('[redacted]') : message;
  }
}

function toMessageParam(message: ModelMessage): MessageParam {
  return { role: message.role, content: message.content.flatMap(toBlockParam) };
}

function toBlockParam(block: ContentBlock): ContentBlockParam[] {
  switch (block.type) {
    case 'text':
      // The API rejects empty text blocks.
      return block.text ? [{ type: 'text', text: block.text }] : [];
    case 'thinking':
      // Only a signed block can go back: the API verifies the signature.
      return block.signature ? [{ type: 'thinking', thinking: block.thinking, signature: block.signature }] : [];
    case 'tool_use':
      return [{ type: 'tool_use', id: block.id, name: block.name, input: block.input }];
    case 'tool_result':
      return [
        {
          type: 'tool_result',
          tool_use_id: block.toolUseId,
          content: block.content.flatMap(toToolResultParam),
          is_error: block.isError,
        },
      ];
  }
}

function toToolResultParam(block: ToolResultBlock): Array<TextBlockParam | ImageBlockParam> {
  if (block.type === 'text') return block.text ? [{ type: 'text', text: block.text }] : [];
  if (!IMAGE_TYPES.has(block.mimeType)) {
    return [{ type: 'text', text: `[image of unsupported type ${block.mimeType} omitted]` }];
  }
  const mediaType = block.mimeType as 'image/jpeg' | 'image/png' | 'image/gif' | 'image/webp';
  return [{ type: 'image', source: { type: 'base64', media_type: mediaType, data: block.data } }];
}

function toContentBlock(block: Pending): ContentBlock[] {
  switch (block.type) {
    case 'text':
      return block.text ? [{ type: 'text', text: block.text }] : [];
    case 'thinking':
      return [block.signature ? { type: 'thinking', thinking: block.thinking, signature: block.signature } : { type: 'thinking', thinking: block.thinking }];
    case 'tool_use': {
      let input: unknown;
      try {
        // A tool call without arguments streams no JSON at all.
        input = block.json.trim() ? JSON.parse(block.json) : {};
      } catch {
        throw new MalformedStreamError(`tool_use ${block.name} input is not JSON`);
      }
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        throw new MalformedStreamError(`tool_use ${block.name} input is not an object`);
      }
      return [{ type: 'tool_use', id: block.id, name: block.name, input: input as Record<string, unknown> }];
    }
    case 'ignored':
      return [];
  }
}

function mapStopReason(reason: string | null | undefined): StopReason {
  switch (reason) {
    case 'end_turn':
    case 'tool_use':
    case 'max_tokens':
    case 'stop_sequence':
    case 'refusal':
    case 'pause_turn':
      return reason;
    // Same remedy for the caller as max_tokens: the output was cut short.
    case 'model_context_window_exceeded':
      return 'max_tokens';
    default:
      return 'end_turn';
  }
}

/** The server's own wait, in ms: retry-after-ms, else retry-after as seconds or an HTTP date. */
function retryAfter(headers: Headers | undefined): number | undefined {
  const ms = headers?.get('retry-after-ms');
  if (ms) {
    const value = Number.parseFloat(ms);
    if (Number.isFinite(value) && value >= 0) return value;
  }
  const header = headers?.get('retry-after')?.trim();
  if (!header) return undefined;
  if (/^\d+(\.\d+)?$/.test(header)) return Number.parseFloat(header) * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function providerMessage(error: InstanceType<typeof Anthropic.APIError>): string {
  let text = error.apiMessage ?? error.message.replace(/^\d{3}\s+/, '');
  if (!text) text = 'no details';
  return text.length > MAX_PROVIDER_MESSAGE ? `${text.slice(0, MAX_PROVIDER_MESSAGE)}…` : text;
}

function causeMessage(error: Error): string {
  const cause = error.cause;
  return cause instanceof Error && cause.message ? `${error.message} ${cause.message}` : error.message;
}

function isSocketError(error: Error): boolean {
  const codes = [error, error.cause].map((e) => (e as { code?: unknown } | undefined)?.code);
  if (codes.some((c) => typeof c === 'string' && /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|UND_ERR_SOCKET|UND_ERR_CLOSED)$/.test(c))) return true;
  return error instanceof TypeError && /^(terminated|fetch failed)$/.test(error.message);
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
