import type { Logger } from 'pino';
import type { Scrubber } from '../security/scrubber.js';

/**
 * The shortest secret value scrubbed from a task's log lines. Shorter ones would match ordinary
 * words of every line; they are still scrubbed from the task's events, messages and responses.
 */
export const MIN_LOGGED_SECRET_CHARS = 6;

/** What logs about one task: pino's calls with a merge object and a message. */
export interface TaskLog {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

/**
 * The log of a task whose secrets `scrubber` knows: every field value and the message are scrubbed
 * before pino writes the line, so the line is always valid JSON and only this task's lines are
 * touched. Errors stay errors of their class (pino serialises them), with every own property scrubbed.
 */
export function taskLog(logger: Logger, scrubber: Scrubber): TaskLog {
  const logged = scrubber.atLeast(MIN_LOGGED_SECRET_CHARS);
  if (logged.empty) return logger;
  const scrub = (fields: object): object => {
    const out: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(fields)) out[name] = value instanceof Error ? scrubbedError(value, logged) : logged.value(value);
    return out;
  };
  const at = (level: 'debug' | 'info' | 'warn' | 'error') => (fields: object, message?: string) => {
    if (!logger.isLevelEnabled(level)) return;
    logger[level](scrub(fields), message === undefined ? undefined : logged.text(message));
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A copy of `err` (same prototype, so pino names its type) with its message, stack, cause and other own properties scrubbed. */
function scrubbedError(err: Error, scrubber: Scrubber): Error {
  const copy = Object.create(Object.getPrototypeOf(err)) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(err)) {
    const value = (err as unknown as Record<string, unknown>)[name];
    copy[name] = value instanceof Error ? scrubbedError(value, scrubber) : scrubber.value(value);
  }
  return copy as unknown as Error;
}
