import { expect } from 'chai';
import { tmpdir } from 'node:os';
import type { JSONRPCMessage } from '@modelcontextprotocol/client';
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
