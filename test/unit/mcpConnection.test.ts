import { expect } from 'chai';
import type { CallToolResult, Client } from '@modelcontextprotocol/client';
import { crashStdioCommand, startCrashHttpServer } from '../../fixtures/mcp/crashServer.js';
import type { CrashHttpServer } from '../../fixtures/mcp/crashServer.js';
import { startEchoHttpServer, STRUCTURED_OUTPUT } from '../../fixtures/mcp/echoServer.js';
import type { EchoHttpServer } from '../../fixtures/mcp/echoServer.js';
import { startHangHttpServer } from '../../fixtures/mcp/hangServer.js';
import type { HangHttpServer } from '../../fixtures/mcp/hangServer.js';
import type { McpServerConfig } from '../../src/config.js';
import type { ElicitResult } from '@modelcontextprotocol/client';
import { startAskHttpServer } from '../../fixtures/mcp/askServer.js';
import type { AskHttpServer } from '../../fixtures/mcp/askServer.js';
import { isConnectionLost, isTimeout, McpConnection } from '../../src/mcp/mcpConnection.js';
import type { ServerRequestContext, ServerRequestHandler } from '../../src/mcp/serverRequests.js';
import type { CallOptions, CallProgress } from '../../src/mcp/mcpConnection.js';
import { rejection, waitFor } from '../support/harness.js';



function textOf(result: CallToolResult): string {
  const [first] = result.content as Array<{ type: string; text?: string }>;
  expect(first?.type).to.equal('text');
  return first!.text!;
}

function options(overrides: Partial<CallOptions> = {}): CallOptions {
  return { signal: new AbortController().signal, timeoutMs: 10_000, ...overrides };
}

/** Counts the `tools/list` requests a connected client sends. */
function countListTools(client: Client): () => number {
  let calls = 0;
  const original = client.listTools.bind(client);
  client.listTools = (...args: Parameters<Client['listTools']>) => {
    calls++;
    return original(...args);
  };
  return () => calls;
}

/** Resolves once the transport has delivered a `tools/call` request (the POST was answered). */
function deliveredCalls(client: Client): Promise<void> {
  const transport = client.transport!;
  const send = transport.send.bind(transport);
  return new Promise((resolve) => {
    transport.send = async (message, sendOptions) => {
      await send(message, sendOptions);
      if ('method' in message && message.method === 'tools/call') resolve();
    };
  });
}

describe('McpConnection', () => {
  const connections: McpConnection[] = [];

  function connection(serverName: string, config: McpServerConfig): McpConnection {
    const made = new McpConnection({ key: `key-${serverName}-${connections.length}`, projectId: 'proj', serverName, config });
    connections.push(made);
    return made;
  }

  afterEach(async () => {
    await Promise.all(connections.splice(0).map((made) => made.close()));
  });

  describe('against the echo server', () => {
    let echo: EchoHttpServer;
    before(async () => {
      echo = await startEchoHttpServer();
    });
    after(async () => {
      await echo.close();
    });

    describe('#connect()', () => {
      it('shares one attempt between concurrent callers', async () => {
        const sessionsBefore = echo.sessions;
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        const [a, b] = await Promise.all([echoConnection.connect(), echoConnection.connect()]);
        expect(a).to.equal(b);
        expect(echo.sessions - sessionsBefore).to.equal(1);
        expect(echoConnection.connects).to.equal(1);
        expect(echoConnection.protocolVersion).to.be.a('string');
      });

      it('rejects once the connection is closed', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        await echoConnection.connect();
        await echoConnection.close();
        expect(echoConnection.isClosed).to.equal(true);
        expect(await rejection(echoConnection.connect())).to.be.instanceOf(Error);
        expect(await rejection(echoConnection.callTool('echo', { text: 'x' }, options()))).to.be.instanceOf(Error);
      });
    });

    describe('#listTools()', () => {
      it('lists the server\'s tools and serves the second call from the cache', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        const requests = countListTools(await echoConnection.connect());
        const first = await echoConnection.listTools();
        expect(first.map((tool) => tool.name).sort()).to.deep.equal(['echo', 'fail', 'flood_progress', 'slow_progress', 'structured', 'whoami']);
        const second = await echoConnection.listTools();
        expect(second).to.deep.equal(first);
        expect(requests()).to.equal(1);
      });

      it('asks the server again with refresh: true and returns the same tools', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        const requests = countListTools(await echoConnection.connect());
        const first = await echoConnection.listTools();
        const refreshed = await echoConnection.listTools({ refresh: true });
        expect(refreshed).to.deep.equal(first);
        expect(requests()).to.equal(2);
      });
    });

    describe('#callTool()', () => {
      it('passes the arguments and returns the result', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        const result = await echoConnection.callTool('echo', { text: 'héllo & goodbye' }, options());
        expect(textOf(result)).to.equal('héllo & goodbye');
        expect(result.isError).to.not.equal(true);
      });

      it('connects on first use', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        expect(echoConnection.connects).to.equal(0);
        await echoConnection.callTool('echo', { text: 'x' }, options());
        expect(echoConnection.connects).to.equal(1);
      });

      it('returns structuredContent', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        const result = await echoConnection.callTool('structured', {}, options());
        expect(result.structuredContent).to.deep.equal(STRUCTURED_OUTPUT);
      });

      it('returns a tool failure as isError, not as an exception', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        const result = await echoConnection.callTool('fail', { message: 'no such city' }, options());
        expect(result.isError).to.equal(true);
        expect(textOf(result)).to.equal('no such city');
      });

      it('reports progress while the tool runs', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        const progress: CallProgress[] = [];
        const result = await echoConnection.callTool('slow_progress', { steps: 3, delayMs: 20 }, options({ onProgress: (p) => progress.push(p) }));
        expect(textOf(result)).to.equal('done');
        // The SDK may drop the last notification when it arrives with the result.
        expect(progress.length).to.be.within(1, 3);
        expect(progress[0]).to.deep.equal({ progress: 1, total: 3, message: 'step 1/3' });
        expect(progress.map((p) => p.progress)).to.deep.equal([1, 2, 3].slice(0, progress.length));
      });

      it('sends meta as the request\'s _meta', async () => {
        const echoConnection = connection('echo', { type: 'http', url: echo.url });
        const result = await echoConnection.callTool('echo', { text: 'with meta' }, options({ meta: { 'airlock/taskId': 't1' } }));
        expect(textOf(result)).to.equal('with meta');
      });
    });
  });

  describe('against the hang server', () => {
    let hang: HangHttpServer;
    beforeEach(async () => {
      hang = await startHangHttpServer();
    });
    afterEach(async () => {
      await hang.close();
    });

    it('rejects with a timeout error when the tool runs past timeoutMs, and the server hears it was cancelled', async () => {
      const hangConnection = connection('hang', { type: 'http', url: hang.url });
      await hangConnection.connect();
      const started = Date.now();
      const err = await rejection(hangConnection.callTool('hang', {}, options({ timeoutMs: 200 })));
      expect(isTimeout(err), String(err)).to.equal(true);
      expect(Date.now() - started).to.be.below(2_000);
      await hang.waitForCancellations(1);
    });

    it('rejects when the signal aborts, and the server records the cancellation', async () => {
      const hangConnection = connection('hang', { type: 'http', url: hang.url });
      const delivered = deliveredCalls(await hangConnection.connect());
      const controller = new AbortController();
      const call = hangConnection.callTool('hang', {}, options({ signal: controller.signal }));
      await delivered;
      controller.abort('the task was cancelled');
      const err = await rejection(call);
      expect(err).to.be.instanceOf(Error);
      const [cancellation] = await hang.waitForCancellations(1);
      expect(cancellation!.reason).to.include('the task was cancelled');
    });

    it('still answers other calls after one timed out', async () => {
      const hangConnection = connection('hang', { type: 'http', url: hang.url });
      await rejection(hangConnection.callTool('hang', {}, options({ timeoutMs: 100 })));
      expect(textOf(await hangConnection.callTool('quick', {}, options()))).to.equal('ok');
      expect(hangConnection.connects).to.equal(1);
    });
  });

  describe('against the crash server', () => {
    it('reconnects to a new stdio process after the server died mid-call', async () => {
      const command = crashStdioCommand();
      const crashConnection = connection('crash', { type: 'stdio', command: command.command, args: command.args });
      const before = textOf(await crashConnection.callTool('ok', {}, options()));
      expect(before).to.match(/^alive \d+$/);

      const err = await rejection(crashConnection.callTool('crash', {}, options()));
      expect(err).to.be.instanceOf(Error);
      expect(isTimeout(err)).to.equal(false);
      expect(isConnectionLost(err), String(err)).to.equal(true);
      await waitFor(() => /crashing \d+/.test(crashConnection.stderr), 'the crash line on stderr');

      const after = textOf(await crashConnection.callTool('ok', {}, options()));
      expect(after).to.match(/^alive \d+$/);
      expect(after).to.not.equal(before);
      expect(crashConnection.connects).to.equal(2);
    });

    describe('over HTTP', () => {
      let crash: CrashHttpServer;
      beforeEach(async () => {
        crash = await startCrashHttpServer();
      });
      afterEach(async () => {
        await crash.close();
      });

      it('opens a new session and retries when the server forgot the old one', async () => {
        const crashConnection = connection('crash', { type: 'http', url: crash.url });
        expect(textOf(await crashConnection.callTool('ok', {}, options()))).to.match(/^alive /);
        expect(crash.sessions).to.equal(1);
        await crash.expireSessions();
        expect(textOf(await crashConnection.callTool('ok', {}, options()))).to.match(/^alive /);
        expect(crash.sessions).to.equal(2);
      });

      it('lists tools again after the server forgot the session', async () => {
        const crashConnection = connection('crash', { type: 'http', url: crash.url });
        await crashConnection.connect();
        await crash.expireSessions();
        const tools = await crashConnection.listTools({ refresh: true });
        expect(tools.map((tool) => tool.name).sort()).to.deep.equal(['crash', 'ok']);
        expect(crash.sessions).to.equal(2);
      });

      it('answers again after the socket carrying a call was dropped', async () => {
        const crashConnection = connection('crash', { type: 'http', url: crash.url });
        await crashConnection.connect();
        const err = await rejection(crashConnection.callTool('crash', {}, options({ timeoutMs: 5_000 })));
        expect(err).to.be.instanceOf(Error);
        expect(crash.crashes).to.equal(1);
        expect(textOf(await crashConnection.callTool('ok', {}, options()))).to.match(/^alive /);
      });
    });
  });

  describe('server requests (ask fixture)', () => {
    let ask: AskHttpServer;
    const refused: { server: string; method: string; reason: string }[] = [];
    before(async () => {
      ask = await startAskHttpServer();
    });
    after(async () => {
      await ask.close();
    });

    /** A handler that answers elicitations with `answer` and records what it was asked; sampling fails loudly. */
    function answering(answer: (params: { message: string }) => ElicitResult) {
      const asked: { message: string; context: Omit<ServerRequestContext, 'signal'> }[] = [];
      const handler: ServerRequestHandler = {
        elicit: async (params, { signal: _signal, ...context }) => {
          asked.push({ message: params.message, context });
          return answer(params);
        },
        createMessage: () => Promise.reject(new Error('unexpected sampling request')),
      };
      return { handler, asked };
    }

    it('without serverRequests declares no capability, so the server cannot ask', async () => {
      const plain = connection('ask', { type: 'http', url: ask.url });
      const result = await plain.callTool('ask', { label: 'plain' }, options());
      expect(result.isError).to.equal(true);
      expect(textOf(result)).to.match(/^label=plain error=/);
    });

    it('routes a request to the handler of the call it belongs to, naming the server and the call', async () => {
      const served = new McpConnection({ key: 'key-ask-served', projectId: 'proj', serverName: 'ask', config: { type: 'http', url: ask.url }, serverRequests: { onRefused: (r) => refused.push(r) } });
      connections.push(served);
      const { handler, asked } = answering(() => ({ action: 'accept', content: { answer: 'forty-two' } }));
      const result = await served.callTool('ask', { label: 'routed' }, options({ requests: { owner: 'task-1', callId: 'call-7', handler } }));
      expect(textOf(result)).to.equal('label=routed action=accept answer=forty-two');
      expect(asked).to.deep.equal([{ message: 'Answer for routed', context: { server: 'ask', callId: 'call-7' } }]);
      expect(refused).to.deep.equal([]);
    });

    it('declines a request while no call that can answer is in flight, and reports it', async () => {
      const served = new McpConnection({ key: 'key-ask-refusing', projectId: 'proj', serverName: 'ask', config: { type: 'http', url: ask.url }, serverRequests: { onRefused: (r) => refused.push(r) } });
      connections.push(served);
      refused.length = 0;
      // A call made without `requests` cannot be asked anything.
      const result = await served.callTool('ask', { label: 'nobody' }, options());
      expect(textOf(result)).to.equal('label=nobody action=decline answer=');
      expect(refused).to.deep.equal([{ server: 'ask', method: 'elicitation/create', reason: 'no tool call is in flight on this connection' }]);
    });
  });
});

