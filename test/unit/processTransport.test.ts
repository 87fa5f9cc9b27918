import { expect } from 'chai';
import { tmpdir } from 'node:os';
import type { JSONRPCMessage } from '@modelcontextprotocol/client';
import { McpConnection } from '../../src/mcp/mcpConnection.js';
import { ProcessTransport } from '../../src/mcp/processTransport.js';

// A real child process that writes a flood of JSON-RPC notifications at once, then exits.
const FLOOD = 20_000;
const script = `const line = (i) => JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: i } }) + '\\n';
let out = ''; for (let i = 1; i <= ${FLOOD}; i++) out += line(i); process.stdout.write(out, () => process.exit(0));`;

describe('ProcessTransport', () => {
  it('hands a flood on in bounded batches, letting the event loop turn between them, and loses nothing at exit', async () => {
    const transport = new ProcessTransport({ command: process.execPath, args: ['-e', script], env: { PATH: process.env.PATH ?? '' }, cwd: tmpdir(), release: () => {} });
    const received: number[] = [];
    let longestRun = 0;
    let run = 0;
    // A timer-free heartbeat: each turn of the loop resets the run of messages handed on in it.
    let beating = true;
    const beat = () => {
      run = 0;
      if (beating) setImmediate(beat);
    };
    setImmediate(beat);
    transport.onmessage = (message: JSONRPCMessage) => {
      received.push((message as unknown as { params: { progress: number } }).params.progress);
      longestRun = Math.max(longestRun, ++run);
    };
    const closed = new Promise<void>((resolve) => (transport.onclose = resolve));
    await transport.start();
    await closed;
    beating = false;
    expect(received.length).to.equal(FLOOD);
    expect(received.at(-1)).to.equal(FLOOD);
    // 64 a batch; a batch read in the poll phase and the next one in the check phase may both fall
    // between two heartbeats.
    expect(longestRun, 'messages handed on between two heartbeats').to.be.at.most(2 * 64);
  });
});

// A stdio MCP server just enough for McpConnection (initialize, tools/list, tools/call) whose tool
// writes its progress notifications and its result in one write, as a server the client is slower
// than does: they are read in one chunk.
const ONE_WRITE = 500;
const oneWriteServer = `const send = (m) => JSON.stringify({ jsonrpc: '2.0', ...m }) + '\\n';
let buffer = '';
process.stdin.on('data', (chunk) => {
  buffer += chunk;
  for (let i; (i = buffer.indexOf('\\n')) >= 0; ) {
    const m = JSON.parse(buffer.slice(0, i)); buffer = buffer.slice(i + 1);
    if (m.method === 'initialize') process.stdout.write(send({ id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'one-write', version: '1' } } }));
    if (m.method === 'tools/list') process.stdout.write(send({ id: m.id, result: { tools: [{ name: 'burst', inputSchema: { type: 'object' } }] } }));
    if (m.method === 'tools/call') {
      let out = '';
      for (let p = 1; p <= ${ONE_WRITE}; p++) out += send({ method: 'notifications/progress', params: { progressToken: m.params._meta.progressToken, progress: p } });
      process.stdout.write(out + send({ id: m.id, result: { content: [{ type: 'text', text: 'done' }] } }));
    }
  }
});
process.stdin.on('end', () => process.exit(0));`;

describe('ProcessTransport through McpConnection', () => {
  it('hands on every progress notification read in the same chunk as the result, the last one too', async () => {
    const connection = new McpConnection({ key: 'one-write', projectId: 'proj', serverName: 'one-write', config: { type: 'stdio', command: process.execPath, args: ['-e', oneWriteServer] } });
    try {
      const seen: number[] = [];
      const result = await connection.callTool('burst', {}, { signal: new AbortController().signal, timeoutMs: 30_000, onProgress: (p) => seen.push(p.progress) });
      expect(result.content).to.deep.equal([{ type: 'text', text: 'done' }]);
      // The SDK hands a notification on a microtask after a response read with it; the transport
      // hands the response on a turn later, so none is dropped as of a finished call.
      expect(seen.length).to.equal(ONE_WRITE);
      expect(seen.at(-1)).to.equal(ONE_WRITE);
    } finally {
      await connection.close();
    }
  });
});
