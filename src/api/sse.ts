import type { ServerResponse } from 'node:http';
import type { StreamFrame, StreamSink } from '../runtime/tasks/taskStream.js';

/**
 * The one place SSE is formatted (API.md section 5): exactly `event:`, `data:` (one line of JSON),
 * `id:`, then a blank line. JSON.stringify never emits a raw newline, so data stays on one line.
 */
export function formatSseEvent(frame: StreamFrame): string {
  return `event: ${frame.event}\ndata: ${sseJson(frame.data)}\nid: ${frame.id}\n\n`;
}

/**
 * The data line's JSON. The hosted API's Python sample strips the prefix with
 * `line.replace('data: ', '')`, which also removes every "data: " inside the text (a model writing
 * "the data: 42"). Outside strings JSON.stringify never writes "data: ", so escaping that space
 * (`\u0020`) changes no value and lets such a client read the frame unchanged.
 */
function sseJson(data: unknown): string {
  const json = JSON.stringify(data);
  return json.includes('data: ') ? json.replaceAll('data: ', 'data:\\u0020') : json;
}

export const SSE_HEARTBEAT = ':heartbeat\n\n';

// A live event goes to every subscriber with the same data object: encode it once, as a Buffer,
// so a thousand sockets share one copy instead of a thousand strings each converted on write.
const encoded = new WeakMap<object, { event: string; id: number; bytes: Buffer }>();

function encode(frame: StreamFrame): Buffer | string {
  if (!frame.data || typeof frame.data !== 'object') return formatSseEvent(frame);
  const cached = encoded.get(frame.data);
  if (cached && cached.event === frame.event && cached.id === frame.id) return cached.bytes;
  const bytes = Buffer.from(formatSseEvent(frame));
  encoded.set(frame.data, { event: frame.event, id: frame.id, bytes });
  return bytes;
}

/** Writes frames to an HTTP response as Server-Sent Events, with a heartbeat comment. */
export class SseSink implements StreamSink {
  private isClosed = false;
  private readonly closeCallbacks: (() => void)[] = [];
  private readonly heartbeat: NodeJS.Timeout;

  constructor(private readonly res: ServerResponse, heartbeatIntervalMs: number) {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      // Proxies such as nginx buffer responses unless told not to.
      'X-Accel-Buffering': 'no',
    });
    res.socket?.setNoDelay(true);
    res.socket?.setTimeout(0);
    res.flushHeaders();
    this.heartbeat = setInterval(() => this.res.write(SSE_HEARTBEAT), heartbeatIntervalMs);
    const onClose = () => this.closed_();
    res.once('close', onClose);
    res.once('error', onClose);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get bufferedBytes(): number {
    return this.res.writableLength;
  }

  write(frame: StreamFrame): boolean {
    if (this.isClosed) return true;
    return this.res.write(encode(frame));
  }

  drained(): Promise<void> {
    if (this.isClosed || !this.res.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.once('drain', done);
      this.res.once('close', done);
    });
  }

  end(): void {
    if (this.isClosed) return;
    this.res.end();
    this.closed_();
  }

  destroy(): void {
    if (this.isClosed) return;
    this.res.destroy();
    this.closed_();
  }

  onClose(callback: () => void): void {
    if (this.isClosed) callback();
    else this.closeCallbacks.push(callback);
  }

  /** Resolves when the stream has ended either way. */
  whenClosed(): Promise<void> {
    return new Promise((resolve) => this.onClose(resolve));
  }

  private closed_(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    clearInterval(this.heartbeat);
    for (const callback of this.closeCallbacks.splice(0)) callback();
  }
}
