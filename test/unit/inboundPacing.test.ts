import { expect } from 'chai';
import { startEchoHttpServer } from '../../fixtures/mcp/echoServer.js';
import type { EchoHttpServer } from '../../fixtures/mcp/echoServer.js';
import type { McpServerConfig } from '../../src/config.js';
import { STREAM_SLICE_BYTES } from '../../src/mcp/inboundPacing.js';
import { McpConnection } from '../../src/mcp/mcpConnection.js';

const FLOOD = 20_000;
/**
 * The most progress notifications one STREAM_SLICE_BYTES slice of the echo server's event stream
 * can hold: each is an SSE frame of more than 100 bytes (`event: message`, an id, the JSON).
 */
const PER_SLICE = Math.ceil(STREAM_SLICE_BYTES / 100);

/**
 * Counts the turns of the event loop: a callback that schedules itself with setImmediate runs once
 * per turn, so the count changes between two callbacks exactly when the loop took a turn between
 * them (and so had the chance to serve anything else) .
 */
function loopTurns(): { current(): number; stop(): void } {
  let turn = 0;
  let running = true;
  const tick = () => {
    turn++;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  return { current: () => turn, stop: () => void (running = false) };
}

// A server floods its client with progress notifications over Streamable HTTP; the connection hands
// its event stream to the SDK a bounded slice per turn of the event loop, whatever the server has
// written meanwhile (the stdio transport's own bound: processTransport.test.ts).
describe('pacedFetch (a flooding HTTP server cannot hold the event loop)', function () {
  this.timeout(120_000);
  let echo: EchoHttpServer;
  const connections: McpConnection[] = [];
  before(async () => {
    echo = await startEchoHttpServer();
  });
  after(async () => {
    await Promise.all(connections.map((c) => c.close()));
    await echo.close();
  });

  async function flood(config: McpServerConfig): Promise<{ perTurn: number; progress: number; last: number; text: string }> {
    const connection = new McpConnection({ key: `pacing-${connections.length}`, projectId: 'proj', serverName: 'echo', config });
    connections.push(connection);
    await connection.listTools();
    const byTurn = new Map<number, number>();
    let progress = 0;
    let last = 0;
    const turns = loopTurns();
    try {
      const result = await connection.callTool('flood_progress', { count: FLOOD }, {
        signal: new AbortController().signal,
        timeoutMs: 100_000,
        onProgress: (p) => {
          progress++;
          last = p.progress;
          byTurn.set(turns.current(), (byTurn.get(turns.current()) ?? 0) + 1);
        },
      });
      const [content] = result.content as Array<{ text?: string }>;
      return { perTurn: Math.max(...byTurn.values()), progress, last, text: content?.text ?? '' };
    } finally {
      turns.stop();
    }
  }

  it(`Streamable HTTP: at most one ${STREAM_SLICE_BYTES / 1024} KiB slice of the event stream per turn of the loop`, async () => {
    const { perTurn, progress, last, text } = await flood({ type: 'http', url: echo.url });
    expect(text).to.equal('flooded');
    expect(progress).to.equal(FLOOD);
    expect(last).to.equal(FLOOD);
    expect(perTurn).to.be.at.most(PER_SLICE);
  });
});
