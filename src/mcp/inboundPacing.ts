import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * The most bytes of an HTTP server's event stream the SDK gets to decode in one turn of the event
 * loop (the stdio transport has its own bound, in messages: processTransport.ts). The SDK validates
 * each message several times over, 30–60 µs of CPU here; 16 KiB hold some 120 progress notifications.
 */
export const STREAM_SLICE_BYTES = 16 * 1024;

/**
 * `fetch` for the SDK's HTTP transports whose event streams (`text/event-stream` bodies) reach the
 * SDK at most STREAM_SLICE_BYTES per turn of the event loop. The SDK reads such a body in a loop of
 * promise reactions: whatever the socket had buffered would be parsed, validated and dispatched
 * without a pause, however long it takes, and every other request of the process would wait.
 * Other bodies (JSON answers, errors) are left as they are.
 */
export const pacedFetch: typeof fetch = async (input, init) => {
  const response = await fetch(input, init);
  if (!response.ok || !response.body || !isEventStream(response.headers.get('content-type'))) return response;
  const paced = response.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      for (let offset = 0; offset < chunk.byteLength; offset += STREAM_SLICE_BYTES) {
        if (offset > 0) await nextTurn();
        controller.enqueue(chunk.subarray(offset, offset + STREAM_SLICE_BYTES));
      }
      // The next chunk is sliced only after the loop has had a turn for everything else.
      await nextTurn();
    },
  }));
  // The same Response (status, headers, url) with the paced body: the SDK reads only `body` of an event stream.
  Object.defineProperty(response, 'body', { value: paced });
  return response;
};

function isEventStream(contentType: string | null): boolean {
  return contentType?.split(';')[0]!.trim().toLowerCase() === 'text/event-stream';
}
