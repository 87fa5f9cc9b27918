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
