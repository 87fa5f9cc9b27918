import { expect } from 'chai';
import { performance } from 'node:perf_hooks';
import { echoStdioCommand } from '../../fixtures/mcp/echoServer.js';
import { PROGRESS_INTERVAL_MS } from '../../src/runtime/progressCoalescer.js';
import { runTask, script, startWithServers } from '../support/mcpHarness.js';

// A hostile MCP server floods its client with progress notifications during one call. Airlock
// stores a bounded number of events for it (the latest progress wins) and keeps answering others.
describe('a server that floods progress notifications', function () {
  this.timeout(120_000);
  const COUNT = 20_000;

  it('stores a few coalesced events, the last progress last, and /healthz answers meanwhile', async () => {
    const command = echoStdioCommand();
    const airlock = await startWithServers({ flood: { type: 'stdio', command: command.command, args: command.args } }, { project: { builtinTools: false } });
    const health: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const start = performance.now();
        const res = await fetch(`${airlock.url}/healthz`);
        await res.arrayBuffer();
        health.push(performance.now() - start);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      const started = performance.now();
      const { task, events } = await runTask(airlock, { message: script(['flood__flood_progress', { count: COUNT }]) }, ['completed', 'failed'], 90_000);
      expect(task.status, JSON.stringify(task.error)).to.equal('completed');
      expect(task.output.toolCalls[0].output).to.equal('flooded');
      const progress = events.filter((e) => e.event === 'tool_progress');
      const result = events.find((e) => e.event === 'tool_result')!;
      // At most one event per interval of the task's life (which holds the call's), and the last.
      const bound = Math.ceil((performance.now() - started) / PROGRESS_INTERVAL_MS) + 1;
      expect(progress.length).to.be.at.least(1).and.at.most(Math.min(bound, 400));
      expect(progress.at(-1)!.data).to.include({ progress: COUNT, total: COUNT });
      const values = progress.map((e) => e.data.progress as number);
      expect(values).to.deep.equal([...values].sort((a, b) => a - b));
      expect(events.findIndex((e) => e.event === 'tool_progress' && e.data.progress === COUNT)).to.be.lessThan(events.indexOf(result));
    } finally {
      polling = false;
      await poller;
      await airlock.stop();
    }
    expect(health.length).to.be.at.least(2);
    // Generous: the machine is shared. Without coalescing, each notification is a store write.
    expect(Math.max(...health)).to.be.below(2_000);
  });
});
