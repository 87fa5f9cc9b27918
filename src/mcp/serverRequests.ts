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

/** Counts the requests waiting per owner on one connection. */
export class ServerRequestBudget {
  private readonly waiting = new Map<string, number>();

  constructor(private readonly limit = MAX_SERVER_REQUESTS_WAITING) {}

  /** Takes a place for `owner`'s next request; false when it already has `limit` waiting. */
  enter(owner: string): boolean {
    const count = this.waiting.get(owner) ?? 0;
    if (count >= this.limit) return false;
    this.waiting.set(owner, count + 1);
    return true;
  }

  leave(owner: string): void {
    const count = (this.waiting.get(owner) ?? 1) - 1;
    if (count <= 0) this.waiting.delete(owner);
    else this.waiting.set(owner, count);
  }
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
