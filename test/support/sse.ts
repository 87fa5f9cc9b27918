import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';

/** One SSE block as it came off the wire. */
export interface SseFrame {
  event: string;
  data: any;
  id: number;
  /** The block's exact text, without the blank line that ends it. */
  raw: string;
}

/** An open SSE connection read by a test. */
export interface SseClient {
  status: number;
  headers: IncomingMessage['headers'];
  frames: SseFrame[];
  comments: string[];
  /** Resolves when a frame matching `predicate` has arrived (checks those already here too). */
  waitFor(predicate: (frame: SseFrame) => boolean, timeoutMs?: number): Promise<SseFrame>;
  /** Resolves when the server ends the response. */
  ended: Promise<void>;
  /** The raw body of a non-200 answer. */
  body: string;
  close(): void;
}

/** One block (without its blank line) in the SSE wire format, strictly: event, data, id. */
function parseBlock(block: string): SseFrame {
  const lines = block.split('\n');
  if (lines.length !== 3 || !lines[0]!.startsWith('event: ') || !lines[1]!.startsWith('data: ') || !lines[2]!.startsWith('id: ')) {
    throw new Error(`malformed SSE block: ${JSON.stringify(block)}`);
  }
  return { event: lines[0]!.slice(7), data: JSON.parse(lines[1]!.slice(6)), id: Number(lines[2]!.slice(4)), raw: block };
}

/** A whole SSE body, parsed strictly: every block a frame or a `:` comment, and nothing after the last blank line. */
export function parseSseBody(body: string): { frames: SseFrame[]; comments: string[] } {
  const blocks = body.split('\n\n');
  if (blocks.pop() !== '') throw new Error(`SSE body does not end with a blank line: ${JSON.stringify(body.slice(-200))}`);
  const frames: SseFrame[] = [];
  const comments: string[] = [];
  for (const block of blocks) {
    if (block.startsWith(':')) comments.push(block);
    else frames.push(parseBlock(block));
  }
  return { frames, comments };
}

/** Opens GET `url` and parses the SSE wire format strictly: event, data, id, blank line. */
export function openSse(url: string, headers: Record<string, string>): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      res.setEncoding('utf8');
      const frames: SseFrame[] = [];
      const comments: string[] = [];
      const waiters: { predicate: (f: SseFrame) => boolean; resolve: (f: SseFrame) => void }[] = [];
      let buffer = '';
      let body = '';
      let endResolve!: () => void;
      const ended = new Promise<void>((r) => (endResolve = r));
      res.on('data', (chunk: string) => {
        if (res.statusCode !== 200) {
          body += chunk;
          return;
        }
        buffer += chunk;
        let index: number;
        while ((index = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, index);
          buffer = buffer.slice(index + 2);
          if (block.startsWith(':')) {
            comments.push(block);
            continue;
          }
          const frame = parseBlock(block);
          frames.push(frame);
          for (const waiter of [...waiters]) {
            if (waiter.predicate(frame)) {
              waiters.splice(waiters.indexOf(waiter), 1);
              waiter.resolve(frame);
            }
          }
        }
      });
      res.on('end', () => endResolve());
      res.on('close', () => endResolve());
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        frames,
        comments,
        ended,
        get body() {
          return body;
        },
        waitFor(predicate, timeoutMs = 5_000) {
          const found = frames.find(predicate);
          if (found) return Promise.resolve(found);
          return new Promise((resolveFrame, rejectFrame) => {
            const timer = setTimeout(() => rejectFrame(new Error(`no matching SSE frame within ${timeoutMs} ms; got ${frames.map((f) => f.event).join(', ')}`)), timeoutMs);
            waiters.push({ predicate, resolve: (f) => { clearTimeout(timer); resolveFrame(f); } });
          });
        },
        close() {
          req.destroy();
        },
      };
      resolve(client);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Reads a whole stream that the server ends by itself. */
export async function readSse(url: string, headers: Record<string, string>, timeoutMs = 5_000): Promise<SseClient> {
  const client = await openSse(url, headers);
  await Promise.race([client.ended, new Promise((_, reject) => setTimeout(() => reject(new Error('stream did not end')), timeoutMs))]);
  return client;
}
