import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A response that passed through the proxy: its path and its whole body as the client got it. */
export interface RecordedResponse {
  path: string;
  status: number;
  body: string;
}

/**
 * An HTTP proxy on 127.0.0.1 in front of `target` that records every response body byte for byte,
 * so a test can compare what a client made of a stream with a strict parse of the same bytes.
 */
export async function startRecordingProxy(target: string): Promise<{ url: string; responses: RecordedResponse[]; close(): Promise<void> }> {
  const responses: RecordedResponse[] = [];
  const server = createServer((req, res) => {
    const upstream = request(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      const chunks: Buffer[] = [];
      up.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        res.write(chunk);
      });
      up.on('end', () => {
        responses.push({ path: req.url ?? '', status: up.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        res.end();
      });
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    responses,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
