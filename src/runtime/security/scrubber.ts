/**
 * Replaces secret values with `[secret:KEY]`. Built once per task session from its secrets; used on
 * everything the task stores, streams, logs or returns. Values are matched longest first in one pass,
 * so a secret that contains another is replaced whole and a replacement is never scrubbed again.
 */
export class Scrubber {
  /** The scrubber of no secrets (scrubbers never change, so one serves every task without any). */
  static readonly NONE = new Scrubber({});
  private readonly pattern: RegExp | null;
  private jsonPattern: RegExp | null | undefined;
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
    const values = [...this.keyOf.keys()];
    this.longest = values.reduce((longest, value) => Math.max(longest, value.length), 0);
    this.pattern = patternOf(values);
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

  /** This scrubber's values and `secrets` (theirs win for a value both know). */
  with(secrets: Readonly<Record<string, string>>): Scrubber {
    if (!Object.keys(secrets).length) return this;
    return new Scrubber([...[...this.keyOf].map(([form, key]) => [key, form] as const), ...Object.entries(secrets)]);
  }

  /** The scrubber of the values (and encoded forms) of at least `chars` characters only. */
  atLeast(chars: number): Scrubber {
    const kept = [...this.keyOf].filter(([form]) => form.length >= chars).map(([form, key]) => [key, form] as const);
    return kept.length === this.keyOf.size ? this : new Scrubber(kept);
  }

  /**
   * A line of JSON with every secret value replaced inside its strings, and the line still valid
   * JSON: forms that could only match across its structure (holding a quote, a backslash or a
   * control character unescaped) are not looked for, and neither is a match that begins in the
   * middle of an escape sequence.
   */
  jsonLine(line: string): string {
    if (!this.pattern) return line;
    this.jsonPattern ??= patternOf([...this.keyOf.keys()].filter((form) => isJsonSafe(form)));
    if (!this.jsonPattern) return line;
    return line.replace(this.jsonPattern, (match, offset: number) => (escapedAt(line, offset) ? match : `[secret:${this.keyOf.get(match)}]`));
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

/** One pattern for all `values`, longest first (so a value that contains another wins); null for none. */
function patternOf(values: string[]): RegExp | null {
  if (!values.length) return null;
  return new RegExp([...values].sort((a, b) => b.length - a.length).map(escapeRegExp).join('|'), 'g');
}

/** Whether `form` can stand inside a JSON string as it is: no unescaped quote, no lone backslash, no control character. */
function isJsonSafe(form: string): boolean {
  // Valid JSON string content is exactly what parses back once quoted.
  try {
    JSON.parse(`"${form}"`);
    return true;
  } catch {
    return false;
  }
}

/** Whether the character at `offset` is escaped: preceded by an odd run of backslashes. */
function escapedAt(text: string, offset: number): boolean {
  let backslashes = 0;
  for (let i = offset - 1; i >= 0 && text[i] === '\\'; i--) backslashes++;
  return backslashes % 2 === 1;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The shortest secret value scrubbed from every line of the process's log. */
export const MIN_PROCESS_SECRET_CHARS = 8;

/**
 * The operator's secrets (the config's keys), scrubbed from every line of the process's log on its
 * way out, whatever logged it. A task's secrets are not here: they are scrubbed from that task's
 * own lines (TaskLog), so no value a caller chose can change another tenant's lines. Lines stay
 * valid JSON (Scrubber#jsonLine), and values shorter than MIN_PROCESS_SECRET_CHARS are left alone.
 * Registration is counted, so a value registered twice stays until both are unregistered.
 */
export class SecretRegistry {
  private readonly counts = new Map<string, { key: string; count: number }>();
  private scrubber: Scrubber | null = null;

  /** Registers values; returns the function that unregisters them. */
  register(secrets: Readonly<Record<string, string>>): () => void {
    const entries = Object.entries(secrets).filter(([, value]) => value.length >= MIN_PROCESS_SECRET_CHARS);
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

  /** A JSON log line with every registered value replaced inside its strings. */
  text(line: string): string {
    if (this.counts.size === 0) return line;
    this.scrubber ??= new Scrubber([...this.counts].map(([value, { key }]) => [key, value] as const));
    return this.scrubber.jsonLine(line);
  }
}
