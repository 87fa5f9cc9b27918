import type { MessageRecord } from '../../store/store.js';

/** A message as history and `history_message` events show it. */
export type HistoryMessage = Omit<MessageRecord, 'taskId' | 'afterSeq'>;

/**
 * The user-facing history of a conversation: one assistant message per run, as the hosted API
 * shows it. The store keeps one record per model turn — what the model saw, which a restored
 * session and a resumed run need — so the records of a run (the assistant records after a user
 * message) are merged here: their texts joined by a blank line (as `output.content` and `done`'s
 * `finalResponse` join them), all their thoughts and tool calls in order.
 *
 * While the task is `live`, its run in progress is left out: a stream sends it as the catch-up
 * (from the run's start, `runStartSeq`), so that a client shows the run once, not as a stored
 * message followed by the live rest of it.
 */
export function historyMessages(records: readonly MessageRecord[], live: boolean): HistoryMessage[] {
  const shown = live ? records.slice(0, lastUserIndex(records) + 1) : records;
  const messages: HistoryMessage[] = [];
  let run: MessageRecord[] = [];
  const flush = () => {
    if (run.length) messages.push(mergeRun(run));
    run = [];
  };
  for (const record of shown) {
    if (record.role === 'assistant') {
      run.push(record);
      continue;
    }
    flush();
    messages.push(publicMessage(record));
  }
  flush();
  return messages;
}

/** Where the catch-up of a live task starts: the event sequence at which its latest user message was stored. */
export function runStartOf(records: readonly MessageRecord[]): number {
  return records[lastUserIndex(records)]?.afterSeq ?? 0;
}

function lastUserIndex(records: readonly MessageRecord[]): number {
  for (let i = records.length - 1; i >= 0; i--) if (records[i]!.role === 'user') return i;
  return -1;
}

// One run's turn records as one message: the first record's id (stable, since a run's records are
// all stored before it is shown), the time its last turn was stored.
function mergeRun(records: MessageRecord[]): HistoryMessage {
  if (records.length === 1) return publicMessage(records[0]!);
  const thoughts = records.flatMap((r) => r.thoughts ?? []);
  const toolCalls = records.flatMap((r) => r.toolCalls ?? []);
  return {
    id: records[0]!.id,
    role: 'assistant',
    content: records.map((r) => r.content).filter(Boolean).join('\n\n'),
    createdAt: records.at(-1)!.createdAt,
    ...(thoughts.length ? { thoughts } : {}),
    ...(toolCalls.length ? { toolCalls } : {}),
  };
}

/** One stored record as history shows it. */
export function publicMessage(message: MessageRecord): HistoryMessage {
  const { taskId: _taskId, afterSeq: _afterSeq, ...rest } = message;
  return rest;
}
