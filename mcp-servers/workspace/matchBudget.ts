import { createContext, Script } from 'node:vm';

/** The most time one search_file_content call may spend running its regular expression. */
export const SEARCH_TIME_LIMIT_MS = 5_000;

/** What `MatchBudget.run` throws once the budget is spent. */
export class MatchTimeLimit extends Error {
  override readonly name = 'MatchTimeLimit';
  constructor(readonly limitMs: number) {
    super(`matching took more than its limit of ${limitMs} ms`);
  }
}

// A JavaScript RegExp cannot be interrupted from JavaScript, and a backtracking one can run for
// hours. A vm script's timeout can: V8 terminates whatever runs inside the script, a regular
// expression included, even one of the main realm called from there. So each piece of matching
// runs as a call from this one-line script, under what is left of its search's budget.
const context = createContext({ work: undefined as (() => unknown) | undefined });
const runWork = new Script('work()', { filename: 'search_file_content' });

/** The matching time one search has left; each `run` gets the rest of it, and the whole is bounded. */
export class MatchBudget {
  #spentMs = 0;

  constructor(readonly limitMs: number = SEARCH_TIME_LIMIT_MS) {}

  /** Milliseconds spent in `run` so far. */
  get spentMs(): number {
    return this.#spentMs;
  }

  /**
   * Runs `work` (synchronous matching) and returns its result; throws MatchTimeLimit when it
   * would take the search past its limit, having stopped it at that moment.
   */
  run<T>(work: () => T): T {
    const remaining = this.limitMs - this.#spentMs;
    if (remaining <= 0) throw new MatchTimeLimit(this.limitMs);
    const started = performance.now();
    context.work = work;
    try {
      return runWork.runInContext(context, { timeout: Math.ceil(remaining) }) as T;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw new MatchTimeLimit(this.limitMs);
      throw error;
    } finally {
      context.work = undefined;
      this.#spentMs += performance.now() - started;
    }
  }
}
