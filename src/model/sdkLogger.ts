import { format } from 'node:util';
import type { Logger as SdkLogger } from '@anthropic-ai/sdk/client';
import type { Logger } from 'pino';

/**
 * The warnings the Anthropic SDK prints on its own: on every `messages.create` of a model in its
 * deprecation table (and of some models with `thinking.type=enabled`) it calls `console.warn`,
 * whatever logger the client was given. A call made through `capture` has those warnings handed to
 * `sink` instead, each distinct text once (the model's id is in it: once per model). One instance is
 * shared by every client of a process, so two projects on the same model say it once.
 */
export class SdkWarnings {
  readonly #said = new Set<string>();
  readonly #sink: (message: string, model: string) => void;

  constructor(sink: (message: string, model: string) => void) {
    this.#sink = sink;
  }

  /**
   * Runs `call`, an SDK call for `model`, with `console.warn` caught. The SDK warns before its
   * first await, so the synchronous part of the call is the whole window; console.warn is the
   * original again before `call`'s result is returned, and before the sink hears anything.
   */
  capture<T>(model: string, call: () => T): T {
    const caught: string[] = [];
    const original = console.warn;
    console.warn = (...args: unknown[]) => void caught.push(format(...args));
    try {
      return call();
    } finally {
      console.warn = original;
      for (const text of caught) this.#say(model, text);
    }
  }

  #say(model: string, text: string): void {
    // The SDK's text spans lines (the warning, then where to read about it): one log line here.
    const message = text.trim().replace(/\s*\n\s*/g, ' ');
    if (this.#said.has(message)) return;
    this.#said.add(message);
    this.#sink(message, model);
  }
}

/** The SDK's log lines and its own warnings, through pino as `component: "anthropic-sdk"`. */
export function sdkLogging(logger: Logger): { logger: SdkLogger; warnings: SdkWarnings } {
  const child = logger.child({ component: 'anthropic-sdk' });
  return {
    logger: {
      error: (message: string, ...rest: unknown[]) => child.error({ detail: rest.map(String).join(' ') }, message),
      warn: (message: string, ...rest: unknown[]) => child.warn({ detail: rest.map(String).join(' ') }, message),
      info: (message: string) => child.debug(message),
      debug: (message: string) => child.debug(message),
    },
    warnings: new SdkWarnings((message, model) => child.warn({ model }, message)),
  };
}
