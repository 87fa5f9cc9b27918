import type { EventRecord, Store } from '../../store/store.js';
import type { Scrubber } from '../security/scrubber.js';

/** Every event type a task stream can carry (API.md section 5). */
export const EVENT_TYPES = [
  'status', 'thought', 'content', 'tool_call', 'tool_progress', 'tool_result', 'input_required', 'input_resolved',
  'subagent_start', 'subagent_thought', 'subagent_tool', 'subagent_end', 'error', 'done',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** Appends one event to the task a run or a request belongs to; resolves once it is stored. */
export type EmitEvent = (type: EventType, data: Record<string, unknown>) => Promise<unknown>;

/** Event types that only the stream's replay phase sends; they are never stored. */
export const REPLAY_EVENT_TYPES = ['history_message', 'history_done'] as const;

/** Event types after which a live stream ends. */
export const FINAL_EVENT_TYPES: ReadonlySet<string> = new Set(['done', 'error']);

/** Receives every event of the tasks it subscribed to, in sequence order. */
export type EventListener = (event: EventRecord) => void;

/**
 * Fans out persisted events to live subscribers. The in-process bus serves one node; a networked
 * bus (PostgreSQL LISTEN/NOTIFY) serves several. Publishing never waits for a subscriber.
 */
export interface EventBus {
  /** Starts delivering the task's events to `listener`; returns the unsubscribe function. */
  subscribe(taskId: string, listener: EventListener): () => void;
  /** Delivers an event that is already persisted. */
  publish(event: EventRecord): void;
}

export class InProcessEventBus implements EventBus {
  private readonly listeners = new Map<string, Set<EventListener>>();

  subscribe(taskId: string, listener: EventListener): () => void {
    let set = this.listeners.get(taskId);
    if (!set) this.listeners.set(taskId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(taskId) === set) this.listeners.delete(taskId);
    };
  }

  publish(event: EventRecord): void {
    const set = this.listeners.get(event.taskId);
    if (!set) return;
    // Deleting from a Set while iterating it is safe; no copy per event is needed.
    for (const listener of set) {
      try {
        listener(event);
      } catch {
        // A broken subscriber must not stop the task or the other subscribers.
      }
    }
  }

  /** Subscribers of one task, for tests and metrics. */
  subscriberCount(taskId: string): number {
    return this.listeners.get(taskId)?.size ?? 0;
  }
}

/**
 * The one way a task emits events: scrub, persist with the next sequence number, then fan out.
 * A stream can therefore resume from any sequence without losing an event.
 */
export class EventLog {
  constructor(private readonly store: Store, private readonly bus: EventBus) {}

  async append(taskId: string, type: EventType, data: Record<string, unknown>, scrubber?: Scrubber): Promise<EventRecord> {
    const event = await this.store.appendEvent(taskId, type, scrubber ? scrubber.value(data) : data);
    this.bus.publish(event);
    return event;
  }
}

const EVENT_PAGE = 5_000;

/** Every stored event of a task after `afterSeq`, read in pages. */
export async function readEvents(store: Store, taskId: string, afterSeq: number): Promise<EventRecord[]> {
  const events: EventRecord[] = [];
  for (let cursor = afterSeq; ;) {
    const page = await store.listEvents(taskId, cursor, EVENT_PAGE);
    events.push(...page);
    if (page.length < EVENT_PAGE) return events;
    cursor = page.at(-1)!.seq;
  }
}
