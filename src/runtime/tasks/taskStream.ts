import type { EventRecord, Store } from '../../store/store.js';
import { isLive } from '../../store/store.js';
import type { EventBus } from '../events/events.js';
import { FINAL_EVENT_TYPES } from '../events/events.js';
import type { Principal } from '../security/principal.js';
import { historyMessages, runStartOf } from './history.js';
import type { TaskService } from './taskService.js';
import { foldEvents } from '../runs/turnState.js';

/** One event as a stream sends it. */
export interface StreamFrame {
  event: string;
  data: unknown;
  id: number;
}

/** Where a stream writes; the SSE writer implements it over an HTTP response. */
export interface StreamSink {
  /** Queues a frame; false when the client's buffer is above its high-water mark. */
  write(frame: StreamFrame): boolean;
  /** Bytes written but not yet taken by the client. */
  readonly bufferedBytes: number;
  /** Resolves when the buffer has drained or the sink has closed. */
  drained(): Promise<void>;
  /** Ends the response normally. */
  end(): void;
  /** Drops the connection (a client too slow to keep up); it can resume with Last-Event-ID. */
  destroy(): void;
  readonly closed: boolean;
  /** Called once when the client goes away or the sink ends. */
  onClose(callback: () => void): void;
}

export interface TaskStreamOptions {
  store: Store;
  bus: EventBus;
  service: TaskService;
  /** A live client this far behind for longer than `slowClientGraceMs` is dropped (default 1 MiB). */
  slowClientBufferBytes?: number;
  /** How long a client may stay behind by more than `slowClientBufferBytes` (default 5 s). */
  slowClientGraceMs?: number;
  /** A client this far behind is dropped at once, bounding memory (default 32 MiB). */
  maxClientBufferBytes?: number;
  /** Events buffered while history is replayed; past it the client is dropped. */
  maxPendingEvents?: number;
}

const REPLAY_PAGE = 1_000;

/**
 * The phases of GET /tasks/:id/stream (API.md section 5): history, history_done, catch-up of the
 * live run, then live events; or, on resume, every stored event after the given sequence, then
 * live events. Subscribing before reading the store, and dropping buffered events at or below what
 * was read, is what makes the seam between stored and live events lose and repeat nothing.
 */
export class TaskStreams {
  private readonly slowBytes: number;
  private readonly slowGraceMs: number;
  private readonly maxBytes: number;
  private readonly maxPendingEvents: number;

  constructor(private readonly options: TaskStreamOptions) {
    this.slowBytes = options.slowClientBufferBytes ?? 1024 * 1024;
    this.slowGraceMs = options.slowClientGraceMs ?? 5_000;
    this.maxBytes = options.maxClientBufferBytes ?? 32 * 1024 * 1024;
    this.maxPendingEvents = options.maxPendingEvents ?? 100_000;
  }

  /** Checks access (throws NOT_FOUND) and returns the function that runs the stream into a sink. */
  async prepare(principal: Principal, taskId: string, afterSeq: number | undefined): Promise<(sink: StreamSink) => Promise<void>> {
    await this.options.service.visibleTask(principal, taskId);
    return (sink) => this.run(taskId, afterSeq, sink);
  }

  private async run(taskId: string, afterSeq: number | undefined, sink: StreamSink): Promise<void> {
    const { store, bus } = this.options;
    let pending: EventRecord[] | null = [];
    let lastSent = 0;
    let ended = false;
    let behindSince = 0;
    const finish = () => {
      if (ended) return;
      ended = true;
      sink.end();
    };
    const sendLive = (event: EventRecord) => {
      if (ended || sink.closed || event.seq <= lastSent) return;
      sink.write({ event: event.type, data: event.data, id: event.seq });
      lastSent = event.seq;
      if (FINAL_EVENT_TYPES.has(event.type)) return finish();
      // A burst may outrun a healthy client for a moment; one that stays behind is dropped and
      // can resume with Last-Event-ID. Either way the task never waits for it.
      const buffered = sink.bufferedBytes;
      if (buffered <= this.slowBytes) behindSince = 0;
      else if (buffered > this.maxBytes) sink.destroy();
      else if (!behindSince) behindSince = Date.now();
      else if (Date.now() - behindSince > this.slowGraceMs) sink.destroy();
    };
    const unsubscribe = bus.subscribe(taskId, (event) => {
      if (!pending) return sendLive(event);
      pending.push(event);
      if (pending.length > this.maxPendingEvents) sink.destroy();
    });
    sink.onClose(unsubscribe);

    const write = async (frame: StreamFrame) => {
      if (!sink.write(frame)) await sink.drained();
    };

    try {
      let live: boolean;
      if (afterSeq !== undefined) {
        let cursor = afterSeq;
        // Each next page is read while the one before it is written (a read crosses to the store's thread).
        const read = (after: number) => {
          const page = store.listEvents(taskId, after, REPLAY_PAGE);
          page.catch(() => undefined); // awaited below, unless the client leaves first
          return page;
        };
        let next = read(cursor);
        for (;;) {
          const page = await next;
          const more = page.length === REPLAY_PAGE;
          if (more) next = read(page.at(-1)!.seq);
          for (const event of page) {
            if (sink.closed) return;
            await write({ event: event.type, data: event.data, id: event.seq });
            cursor = event.seq;
          }
          if (!more) break;
        }
        lastSent = cursor;
        const task = await store.getTask(taskId);
        live = task ? isLive(task.status) : false;
      } else {
        const snapshot = await store.snapshot(taskId);
        if (!snapshot) return finish();
        const at = snapshot.lastSeq;
        live = isLive(snapshot.task.status);
        // One message per run; the run in progress is the catch-up's, from its start.
        const history = historyMessages(snapshot.messages, live);
        for (const message of history) {
          if (sink.closed) return;
          await write({ event: 'history_message', data: message, id: at });
        }
        await write({ event: 'history_done', data: { messageCount: history.length, isStreaming: live }, id: at });
        if (!live) return finish();
        for (const frame of await this.catchUp(taskId, runStartOf(snapshot.messages), at)) await write(frame);
        lastSent = at;
      }
      // Hand over from stored to live: what arrived meanwhile and is newer than what was sent.
      const buffered = pending;
      pending = null;
      for (const event of buffered) sendLive(event);
      if (!live && !ended) finish();
    } catch (err) {
      if (!sink.closed) sink.destroy();
      throw err;
    }
  }

  // The state of the run in progress, as frames: its texts (whole when finished, else partial), thoughts, each tool call at its
  // latest status (pending approvals are re-sent as awaiting_approval), results so far, and pending input requests.
  private async catchUp(taskId: string, since: number, until: number): Promise<StreamFrame[]> {
    const events = await this.options.store.listEvents(taskId, since, Number.MAX_SAFE_INTEGER, until);
    const state = foldEvents(events);
    const frames: StreamFrame[] = [];
    for (const text of state.finished) frames.push({ event: 'content', data: { text, isPartial: false }, id: until });
    if (state.partial) frames.push({ event: 'content', data: { text: state.partial, isPartial: true }, id: until });
    for (const thought of state.thoughts) frames.push({ event: 'thought', data: thought, id: until });
    for (const call of state.toolCalls) {
      // A call with a result is shown as its last tool_call said (executing, or awaiting_approval
      // for one declined, or error for one denied), then its result.
      const status = call.output === undefined ? call.status : (state.callStatuses.get(call.callId) ?? 'executing');
      frames.push({ event: 'tool_call', data: { callId: call.callId, toolName: call.toolName, ...(call.server ? { server: call.server } : {}), status, args: call.args, ...(call.approvalId ? { approvalId: call.approvalId } : {}) }, id: until });
      if (call.output !== undefined) frames.push({ event: 'tool_result', data: { callId: call.callId, status: call.status, output: call.output, ...(call.approvalId ? { approvalId: call.approvalId } : {}) }, id: until });
    }
    // MCP servers' input requests still waiting for an answer, as they were announced.
    for (const input of state.pendingInputs) frames.push({ event: 'input_required', data: input.request, id: until });
    return frames;
  }
}
