import type { CreateMessageRequestParams, CreateMessageResult, ElicitRequestFormParams, ElicitRequestURLParams, ElicitResult } from '@modelcontextprotocol/client';

/** Where a server's request came from, as the connection tells it to whoever answers. */
export interface ServerRequestContext {
  /** The configured name of the server that asked. */
  server: string;
  /** The tool call the server is serving, when it could be told apart from the owner's other calls. */
  callId?: string;
  /** Aborted when the server withdraws the request, the call ends or the connection closes. */
  signal: AbortSignal;
}

/** Answers what a server asks its client while it serves a call (MCP elicitation and sampling). */
export interface ServerRequestHandler {
  /** `elicitation/create`, form or URL mode; also the embedded requests of a 2026-07-28 `input_required` result. */
  elicit(params: ElicitRequestFormParams | ElicitRequestURLParams, context: ServerRequestContext): Promise<ElicitResult>;
  /** `sampling/createMessage`; throws (an error with a numeric `code`) to refuse it. */
  createMessage(params: CreateMessageRequestParams, context: ServerRequestContext): Promise<CreateMessageResult>;
}

/** What a caller passes with a call so that the server's requests during it reach the caller. */
export interface CallRequests {
  /** Who the call is for (a task id): requests are only ever routed within one owner. */
  owner: string;
  callId: string;
  handler: ServerRequestHandler;
}

/** A call in flight on one connection, which the server may ask for input while it runs. */
export interface ActiveCall extends CallRequests {
  /** Aborted when the call ends, however it ends. */
  signal: AbortSignal;
  /** Stops the call's time limit while the client answers the server; the returned function resumes it. */
  pause(): () => void;
}

/** To whom a server's request belongs. */
export type Attribution =
  | { kind: 'call'; call: ActiveCall }
  /** One owner has several calls in flight and the request does not say which one it is for. */
  | { kind: 'owner'; calls: ActiveCall[] }
  | { kind: 'none'; reason: string };

/**
 * Ties a server's request to the call it belongs to. `related` is the call whose request the
 * server's message arrived with (a Streamable HTTP response stream, or the 2026-07-28 `input_required`
 * result of that call); without it — stdio and HTTP+SSE carry no relation on the wire — the request
 * can only be the owner's when every call in flight on the connection has the same owner (always
 * so on a per-task stdio connection). Anything else is refused: a shared connection must never let
 * one task answer for another.
 */
export function attribute(related: ActiveCall | undefined, active: readonly ActiveCall[]): Attribution {
  if (related && active.includes(related)) return { kind: 'call', call: related };
  if (active.length === 0) return { kind: 'none', reason: 'no tool call is in flight on this connection' };
  const owner = active[0]!.owner;
  if (active.some((call) => call.owner !== owner)) return { kind: 'none', reason: 'calls of several tasks are in flight on this connection and the request names none of them' };
  return active.length === 1 ? { kind: 'call', call: active[0]! } : { kind: 'owner', calls: [...active] };
}

/**
 * How many of a server's requests (elicitation, sampling) one owner may have waiting for an answer
 * on one connection. Each waiting request is a pending input or approval the owner's user sees; a
 * server that sends more at once gets the rest refused at once (declined, or an MCP error), so a
 * flood of requests costs no events, store writes or model calls.
 */
export const MAX_SERVER_REQUESTS_WAITING = 4;

/**
 * How many requests one owner's server may have answered on one connection in a burst, and how
 * many a second after it. A request past the rate waits for its turn (in one of the places above,
 * its call's time limit paused), so a server that asks one thing after another, each answered or
 * withdrawn at once, causes at most this many requests' events a second.
 */
export const SERVER_REQUEST_BURST = 10;
export const SERVER_REQUESTS_PER_SECOND = 1;

/** Past this many owners remembered, those with nothing waiting and a full burst are forgotten. */
const SWEEP_OWNERS = 64;

export interface ServerRequestLimits {
  waiting: number;
  burst: number;
  perSecond: number;
}

/** What `enter` decides for a request: answer it after `delayMs` (0: now), or refuse it. */
export type Admission = { kind: 'admitted'; delayMs: number } | { kind: 'refused'; reason: string };

interface OwnerState {
  waiting: number;
  /** Requests that may still be admitted at once (a token bucket); below 1, the next one waits. */
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
}

/** Counts the requests waiting per owner on one connection, and paces the ones it admits. */
export class ServerRequestBudget {
  private readonly owners = new Map<string, OwnerState>();

  constructor(
    private readonly limits: ServerRequestLimits = { waiting: MAX_SERVER_REQUESTS_WAITING, burst: SERVER_REQUEST_BURST, perSecond: SERVER_REQUESTS_PER_SECOND },
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes a place for `owner`'s next request, refused when it already has `waiting` waiting; `leave` gives it back. */
  enter(owner: string): Admission {
    const { waiting, perSecond } = this.limits;
    const state = this.refilled(owner);
    if (state.waiting >= waiting) return { kind: 'refused', reason: `the server already has ${waiting} requests waiting for an answer in this task` };
    state.waiting++;
    // Taken now, even when the request must wait for it: the next request waits behind this one.
    const delayMs = state.tokens >= 1 ? 0 : ((1 - state.tokens) / perSecond) * 1000;
    state.tokens -= 1;
    this.owners.set(owner, state);
    return { kind: 'admitted', delayMs };
  }

  /** Gives the place back; `withdrawn`: the request was never answered, and its turn is given back too. */
  leave(owner: string, withdrawn = false): void {
    const state = this.owners.get(owner);
    if (!state) return;
    state.waiting = Math.max(0, state.waiting - 1);
    if (withdrawn) state.tokens += 1;
    if (state.waiting === 0 && this.owners.size > SWEEP_OWNERS) this.sweep();
  }

  private refilled(owner: string): OwnerState {
    const now = this.now();
    const state = this.owners.get(owner) ?? { waiting: 0, tokens: this.limits.burst, at: now };
    state.tokens = Math.min(this.limits.burst, state.tokens + ((now - state.at) / 1000) * this.limits.perSecond);
    state.at = now;
    return state;
  }

  // An owner with nothing waiting and its burst refilled is as good as new: a connection shared by
  // many tasks over its life does not keep every one of them.
  private sweep(): void {
    for (const owner of [...this.owners.keys()]) {
      const state = this.refilled(owner);
      if (state.waiting === 0 && state.tokens >= this.limits.burst) this.owners.delete(owner);
    }
  }
}

/** Resolves true after `ms` (a request's wait for its turn), or false as soon as the signal aborts. */
export function waitForTurn(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** At most one report per `intervalMs`; the next one says how many were left out meanwhile. */
export class ThrottledReport<T extends object> {
  private lastAt = -Infinity;
  private skipped = 0;

  constructor(private readonly report: (entry: T & { skipped?: number }) => void, private readonly intervalMs = 10_000, private readonly now: () => number = () => performance.now()) {}

  offer(entry: T): void {
    if (this.now() - this.lastAt < this.intervalMs) {
      this.skipped++;
      return;
    }
    this.lastAt = this.now();
    const skipped = this.skipped;
    this.skipped = 0;
    this.report(skipped ? { ...entry, skipped } : entry);
  }
}
