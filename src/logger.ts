import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { SecretRegistry } from './runtime/security/scrubber.js';

/**
 * Structured JSON logs. Every line passes through the secret registry on its way out, so a
 * secret value of a live task (or a configured key) cannot reach the log, whatever logged it.
 */
export function createLogger(options: { level: string; secrets: SecretRegistry; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'airlock' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['*.authorization', '*.Authorization', '*["x-api-key"]', '*.apiKey', '*.secrets', 'secrets'], censor: '[redacted]' },
      hooks: { streamWrite: (line) => options.secrets.text(line) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
