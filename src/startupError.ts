/**
 * Airlock cannot start for a reason outside its configuration: the data directory is in use, the
 * address cannot be listened on. The message is one line for the operator; `airlock serve` prints
 * it and exits 1. A local error: it never crosses the wire.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}
