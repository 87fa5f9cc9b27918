import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { runTask, script, startWithServers } from '../support/mcpHarness.js';

// What an MCP server says when it fails reaches the task's events only scrubbed of the values
// the task's templates put into the server's configuration (here a header from the task's env,
// which is not a secret, so only the router's own scrubbing can hide it).

/** A 2025-era Streamable HTTP server (JSON answers) whose failures echo the X-Tenant header. */
async function startEchoingFailures(failOn: 'tools/list' | 'tools/call'): Promise<{ url: string; server: Server }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      const message = JSON.parse(raw) as { id?: number; method: string; params?: { protocolVersion?: string } };
      const tenant = String(req.headers['x-tenant']);
      const answer = (result: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      if (message.id === undefined) res.writeHead(202).end();
      else if (message.method === failOn) res.writeHead(500, { 'content-type': 'text/plain' }).end(`no access for tenant ${tenant}`);
      else if (message.method === 'initialize') answer({ protocolVersion: message.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'failing', version: '1.0.0' } });
      else if (message.method === 'tools/list') answer({ tools: [{ name: 'act', inputSchema: { type: 'object' } }] });
      else answer({});
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`, server };
}

describe('errors of MCP servers in events', function () {
  this.timeout(60_000);

  for (const failOn of ['tools/list', 'tools/call'] as const) {
    it(`a ${failOn} failure that echoes a templated value shows it scrubbed`, async () => {
      const failing = await startEchoingFailures(failOn);
      const airlock = await startWithServers({ failing: { type: 'http', url: failing.url, protocol: 'legacy', headers: { 'X-Tenant': '{{mcp.TENANT}}' } } }, { project: { builtinTools: false } });
      try {
        const tenant = `tenant-${randomUUID()}`;
        const { task, events } = await runTask(airlock, { message: script(['failing__act', {}]), env: { TENANT: tenant } });
        // The task shows its own env to its caller; what servers said must not repeat it.
        const said = JSON.stringify({ output: task.output, error: task.error, events });
        expect(said).to.include('no access for tenant [secret:TENANT]');
        expect(said).not.to.include(tenant);
        if (failOn === 'tools/list') {
          expect(events.some((e) => e.event === 'status' && /could not list its tools/.test(e.data.message ?? ''))).to.equal(true);
        } else {
          expect(events.find((e) => e.event === 'tool_result')!.data.status).to.equal('error');
        }
      } finally {
        await airlock.stop();
        failing.server.closeAllConnections();
        await new Promise((resolve) => failing.server.close(resolve));
      }
    });
  }
});
