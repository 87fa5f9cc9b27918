/**
 * Replaces secret values with `[secret:KEY]`. Built once per task session from its secrets; used on
 * everything the task stores, streams, logs or returns. Values are matched longest first in one pass,
 * so a secret that contains another is replaced whole and a replacement is never scrubbed again.
 */
export class Scrubber {
  /** The scrubber of no secrets (scrubbers never change, so one serves every task without any). */
  static readonly NONE = new Scrubber({});
  private readonly pattern: RegExp | null;
  private readonly keyOf = new Map<string, string>();
  /** The longest secret value, in characters (0 when there are none). */
  readonly longest: number;

  /** From a record of secrets, or from [key, value] pairs (keys may repeat). */
  constructor(secrets: Readonly<Record<string, string>> | Iterable<readonly [string, string]>) {
    const pairs = Symbol.iterator in secrets ? (secrets as Iterable<readonly [string, string]>) : Object.entries(secrets);
    for (const [key, value] of pairs) {
      if (value.length === 0) continue;
      for (const form of encodedForms(value)) if (!this.keyOf.has(form)) this.keyOf.set(form, key);
    }
    const values = [...this.keyOf.keys()].sort((a, b) => b.length - a.length);
    this.longest = values.length ? values[0]!.length : 0;
    this.pattern = values.length ? new RegExp(values.map(escapeRegExp).join('|'), 'g') : null;
  }

  /** True when there is nothing to scrub. */
  get empty(): boolean {
    return this.pattern === null;
  }

  /** The text with every secret value replaced. */
  text(input: string): string {
    if (!this.pattern) return input;
    return input.replace(this.pattern, (match) => `[secret:${this.keyOf.get(match)}]`);
  }

  /** A deep copy of a JSON-like value with every string scrubbed (object keys included). */
  value<T>(input: T): T {
    if (!this.pattern) return input;
    return this.walk(input) as T;
  }

  /** Where secret values occur in `input`, as [start, end) pairs, in order and never overlapping. */
  spans(input: string): [number, number][] {
    if (!this.pattern) return [];
    return [...input.matchAll(this.pattern)].map((m) => [m.index!, m.index! + m[0].length]);
  }

  /** The secret values this scrubber knows (for prefix checks in streams). */
  values(): IterableIterator<string> {
    return this.keyOf.keys();
  }

  private walk(input: unknown): unknown {
    if (typeof input === 'string') return this.text(input);
    if (Array.isArray(input)) return input.map((item) => this.walk(item));
    if (input && typeof input === 'object') {
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(input)) out[this.text(key)] = this.walk(value);
      return out;
    }
    return input;
  }
}

/**
 * Scrubs a text that arrives in pieces (model deltas): a secret split across two pieces is still
 * caught, because the tail that could be the start of a secret is held back until it can be decided.
 */
export class StreamScrubber {
  private pending = '';

  constructor(private readonly scrubber: Scrubber) {}

  /** Adds a piece; returns the text that is now safe to emit (possibly empty). */
  push(piece: string): string {
    if (this.scrubber.empty) return piece;
    const text = this.pending + piece;
    let cut = text.length - this.heldTail(text);
    // Never cut through a whole secret: a value whose end could also start a secret (s3cr3ts)
    // would otherwise go out in two halves, neither of which matches.
    const crossing = this.scrubber.spans(text).find(([start, end]) => start < cut && end > cut);
    if (crossing) cut = crossing[0];
    this.pending = text.slice(cut);
    return this.scrubber.text(text.slice(0, cut));
  }

  /** Ends the stream: returns whatever was held back, scrubbed. */
  flush(): string {
    const rest = this.scrubber.text(this.pending);
    this.pending = '';
    return rest;
  }

  // The longest suffix of `text` that is a proper prefix of some secret value.
  private heldTail(text: string): number {
    const max = Math.min(text.length, this.scrubber.longest - 1);
    for (let length = max; length > 0; length--) {
      const tail = text.slice(text.length - length);
      for (const value of this.scrubber.values()) if (value.startsWith(tail)) return length;
    }
    return 0;
  }
}

// A tool or a log may show a value JSON-escaped or URL-encoded; those forms are secrets too.
function encodedForms(value: string): string[] {
  const forms = new Set([value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]);
  return [...forms].filter((form) => form.length > 0);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The secrets of every live task session in this process, for the log writer: a log line is scrubbed
 * of all of them, whichever task it is about. Registration is counted, so two tasks sharing a value
 * keep it registered until both end.
 */
export class SecretRegistry {
  private readonly counts = new Map<string, { key: string; count: number }>();
  private scrubber: Scrubber | null = null;

  /** Registers the values of one session; returns the function that unregisters them. */
  register(secrets: Readonly<Record<string, string>>): () => void {
    const entries = Object.entries(secrets).filter(([, value]) => value.length > 0);
    for (const [key, value] of entries) {
      const entry = this.counts.get(value);
      if (entry) entry.count++;
      else this.counts.set(value, { key, count: 1 });
    }
    this.scrubber = null;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (const [, value] of entries) {
        const entry = this.counts.get(value);
        if (entry && --entry.count === 0) this.counts.delete(value);
      }
      this.scrubber = null;
    };
  }

  /** The text with every registered value replaced. */
  text(input: string): string {
    if (this.counts.size === 0) return input;
    this.scrubber ??= new Scrubber([...this.counts].map(([value, { key }]) => [key, value] as const));
    return this.scrubber.text(input);
  }
}
