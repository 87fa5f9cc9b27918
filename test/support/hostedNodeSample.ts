/**
 * A faithful re-implementation of the SSE parser in the hosted task API's Node.js examples (its
 * "SSE Stream Parser"), so the suite can check that a client written from those docs reads every
 * frame Airlock sends. Keep the parsing exactly as the sample does it, quirks included: it splits
 * the buffer on blank lines, skips blocks that are empty or start with `:`, takes line 0 as the
 * event type and line 1 as the data (each with its prefix removed by `replace`), and silently
 * drops a block whose data is not JSON. Only the constants became parameters.
 */
export async function processSSEStream(
  baseUrl: string,
  apiKey: string,
  taskId: string,
  handlers: Record<string, (data: any) => void> = {},
): Promise<{ finalResponse: string }> {
  const response = await fetch(`${baseUrl}/api/v1/tasks/${taskId}/stream`, {
    headers: { Authorization: `Bearer ${apiKey}` },
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let finalResponse = '';

  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split('\n\n');
    buffer = events.pop() || '';

    for (const event of events) {
      if (!event.trim() || event.startsWith(':')) continue;
      const lines = event.split('\n');
      const eventType = lines[0]?.replace('event: ', '');
      const dataLine = lines[1]?.replace('data: ', '');
      if (!dataLine) continue;
      try {
        const data = JSON.parse(dataLine);
        if (handlers[eventType!]) handlers[eventType!]!(data);
        if (eventType === 'done') finalResponse = data.finalResponse;
      } catch {
        // the sample skips malformed JSON
      }
    }
  }
  return { finalResponse };
}
