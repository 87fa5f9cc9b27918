import type { Logger } from 'pino';
import { describeError } from '../../errors.js';
import type { Store } from '../../store/store.js';

/** How long each check may take before it counts as failed. */
export const READY_CHECK_TIMEOUT_MS = 2_000;
/** How long a sandbox probe's result stands: probing runs processes, checks come every few seconds. */
export const SANDBOX_RECHECK_MS = 10_000;

/** What the store check found. */
export interface StoreCheck {
  /** Whether the store answered a read in time. */
  ok: boolean;
  /** How long the round trip took, in ms (up to the timeout). */
  ms: number;
  /** Why not, when not ok. */
  error?: string;
}

/** What the sandbox check found. */
export interface SandboxCheck {
  /** Whether task processes can be started as configured. */
  ok: boolean;
  /** How they run: in bubblewrap, or unsandboxed (`sandbox.mode` "none", or "auto" without bubblewrap). */
  mode: 'bwrap' | 'none';
  /** When the probe whose result this is finished (ISO 8601); absent without a sandbox to probe. */
  probedAt?: string;
  /** Why not, when not ok. */
  error?: string;
}

/** The answer of a readiness check: ready when every check is ok. */
export interface ReadinessReport {
  ready: boolean;
  checks: { store: StoreCheck; sandbox: SandboxCheck };
}

export interface ReadinessOptions {
  store: Pick<Store, 'ping'>;
  /** The sandbox decided at start-up, and its probe when it has one. */
  sandbox: { mode: 'bwrap' | 'none'; probe?: () => Promise<string | undefined> };
  logger: Logger;
  timeoutMs?: number;
  sandboxRecheckMs?: number;
}

/** One run of the sandbox probe: its outcome (the failure, and when it finished). */
interface Probe {
  result: Promise<{ error?: string; at: number }>;
  startedAt: number;
  done: boolean;
}

/**
 * Readiness: can this process serve tasks now? It makes a real round trip to the store (its
 * thread and database) and reuses the sandbox probe of start-up, at most once per
 * `sandboxRecheckMs`, however often it is asked. A check that flips is logged.
 */
export class Readiness {
  readonly #options: ReadinessOptions;
  readonly #timeoutMs: number;
  readonly #recheckMs: number;
  #probe: Probe | undefined;
  readonly #failing = new Set<string>();

  constructor(options: ReadinessOptions) {
    this.#options = options;
    this.#timeoutMs = options.timeoutMs ?? READY_CHECK_TIMEOUT_MS;
    this.#recheckMs = options.sandboxRecheckMs ?? SANDBOX_RECHECK_MS;
  }

  async check(): Promise<ReadinessReport> {
    const [store, sandbox] = await Promise.all([this.#checkStore(), this.#checkSandbox()]);
    this.#note('store', store.error);
    this.#note('sandbox', sandbox.error);
    return { ready: store.ok && sandbox.ok, checks: { store, sandbox } };
  }

  async #checkStore(): Promise<StoreCheck> {
    const started = performance.now();
    const error = await this.#within('the store', this.#options.store.ping().then(() => undefined));
    const ms = Math.round((performance.now() - started) * 10) / 10;
    return error === undefined ? { ok: true, ms } : { ok: false, ms, error };
  }

  async #checkSandbox(): Promise<SandboxCheck> {
    const { mode, probe } = this.#options.sandbox;
    if (!probe) return { ok: true, mode };
    const now = Date.now();
    // A probe in flight is waited for, not started again; a finished one stands for recheckMs.
    if (!this.#probe || (this.#probe.done && now - this.#probe.startedAt >= this.#recheckMs)) {
      const started: Probe = { result: Promise.resolve({ at: now }), startedAt: now, done: false };
      started.result = probe()
        .then((error) => ({ error, at: Date.now() }), (err: unknown) => ({ error: describeError(err), at: Date.now() }))
        .finally(() => (started.done = true));
      this.#probe = started;
    }
    let finished: { error?: string; at: number } | undefined;
    const timedOut = await this.#within('the sandbox probe', this.#probe.result.then((outcome) => void (finished = outcome)));
    if (!finished) return { ok: false, mode, error: timedOut };
    const probedAt = new Date(finished.at).toISOString();
    return finished.error === undefined ? { ok: true, mode, probedAt } : { ok: false, mode, probedAt, error: finished.error };
  }

  /** Undefined when `work` settles in time; else why not. */
  async #within(what: string, work: Promise<unknown>): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`${what} did not answer within ${this.#timeoutMs} ms`), this.#timeoutMs);
    });
    try {
      return await Promise.race([work.then(() => undefined, (err: unknown) => describeError(err)), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  #note(check: 'store' | 'sandbox', error: string | undefined): void {
    if (error !== undefined && !this.#failing.has(check)) {
      this.#failing.add(check);
      this.#options.logger.warn({ check, error }, `not ready: the ${check} check fails`);
    } else if (error === undefined && this.#failing.delete(check)) {
      this.#options.logger.info({ check }, `the ${check} check passes again`);
    }
  }
}
