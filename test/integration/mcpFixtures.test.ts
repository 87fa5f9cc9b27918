import { expect } from 'chai';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Client, ProtocolError, SdkError, SdkErrorCode, SdkHttpError, SSEClientTransport, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { ClientOptions, Progress, Tool, Transport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import type { StdioServerParameters } from '@modelcontextprotocol/client/stdio';
import { echoStdioCommand, startEchoHttpServer, STRUCTURED_OUTPUT } from '../../fixtures/mcp/echoServer.js';
import type { HttpWhoami, StdioWhoami } from '../../fixtures/mcp/echoServer.js';
import { hangStdioCommand, startHangHttpServer } from '../../fixtures/mcp/hangServer.js';
import { crashStdioCommand, startCrashHttpServer } from '../../fixtures/mcp/crashServer.js';
import { changingStdioCommand, startChangingHttpServer } from '../../fixtures/mcp/changingServer.js';
import { MODERN_PROTOCOL_VERSION, startModernHttpServer } from '../../fixtures/mcp/modernServer.js';
import { startEverything } from '../../fixtures/mcp/everything.js';
import { isAlive } from '../support/harness.js';

/** Everything a test opened, closed in afterEach whatever happened. */
const cleanups: Array<() => Promise<unknown>> = [];
const stdioPids: number[] = [];

function track<T extends { close(): Promise<unknown> }>(resource: T): T {
  cleanups.push(() => resource.close());
  return resource;
}

function newClient(options: ClientOptions = {}): Client {
  return track(new Client({ name: 'airlock-fixture-test', version: '0.0.0' }, options));
}

async function connectHttp(url: string, options: ClientOptions = {}, headers: Record<string, string> = {}) {
  const client = newClient(options);
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  return { client, transport };
}

async function connectStdio(command: StdioServerParameters, options: ClientOptions = {}) {
  const client = newClient(options);
  const transport = new StdioClientTransport({ ...command, stderr: 'pipe' });
  const stderr = collect(transport.stderr as Readable);
  await client.connect(transport);
  if (transport.pid !== null) stdioPids.push(transport.pid);
  return { client, transport, stderr, pid: transport.pid! };
}

/** Accumulates a stream's text; `waitFor(pattern)` resolves on the first chunk that makes it match. */
function collect(stream: Readable) {
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return {
    text: () => text,
    waitFor(pattern: RegExp, timeoutMs = 5_000): Promise<RegExpExecArray> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(text);
          if (!match) return;
          clearTimeout(timer);
          stream.off('data', check);
          resolve(match);
        };
        const timer = setTimeout(() => {
          stream.off('data', check);
          reject(new Error(`no ${pattern} in stderr: ${JSON.stringify(text)}`));
        }, timeoutMs);
        stream.on('data', check);
        check();
      });
    },
  };
}

function textOf(result: { content?: unknown }): string {
  const [first] = (result.content ?? []) as Array<{ type: string; text?: string }>;
  expect(first?.type).to.equal('text');
  return first!.text!;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}


/** A promise and the callback that settles it, for handlers that fire later. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe('MCP fixture servers', () => {
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    // StdioClientTransport.close() already ends each child; this is the by-PID backstop.
    for (const pid of stdioPids.splice(0)) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  });

  describe('echoServer over Streamable HTTP', () => {
    it('reports every header and the URL it saw, and counts sessions and connections', async () => {
      const server = track(await startEchoHttpServer());
      const { client, transport } = await connectHttp(`${server.url}?tenant=t1`, {}, { 'X-Airlock-Task': 'task-1' });

      expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'héllo' } }))).to.equal('héllo');
      const seen = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} }))) as HttpWhoami;
      expect(seen.transport).to.equal('http');
      expect(seen.headers['x-airlock-task']).to.equal('task-1');
      expect(seen.headers['mcp-session-id']).to.equal(transport.sessionId);
      expect(seen.headers['mcp-protocol-version']).to.equal('2025-11-25');
      expect(seen.headers.host).to.match(/^127\.0\.0\.1:\d+$/);
      expect(seen.url).to.equal('/mcp?tenant=t1');

      // RequestOptions.headers adds headers to one call's POST (Streamable HTTP only), over the transport's.
      const perCall = await client.callTool({ name: 'whoami', arguments: {} }, { headers: { 'x-airlock-task': 'task-9', 'x-extra': '1' } });
      const seenPerCall = JSON.parse(textOf(perCall)) as HttpWhoami;
      expect(seenPerCall.headers['x-airlock-task']).to.equal('task-9');
      expect(seenPerCall.headers['x-extra']).to.equal('1');

      await connectHttp(server.url, {}, { 'X-Airlock-Task': 'task-2' });
      expect(server.sessions).to.equal(2);
      expect(server.connections).to.be.at.least(1);
    });

    it('falls back to 2025-11-25 with a session when an auto client probes this legacy-only server', async () => {
      const server = track(await startEchoHttpServer());
      const { client, transport } = await connectHttp(server.url, { versionNegotiation: { mode: 'auto' } });
      expect(client.getProtocolEra()).to.equal('legacy');
      expect(client.getNegotiatedProtocolVersion()).to.equal('2025-11-25');
      expect(transport.sessionId).to.be.a('string');
      expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'x' } }))).to.equal('x');
    });

    it('sends progress notifications to onprogress, and resetTimeoutOnProgress keeps a slow call alive', async () => {
      const server = track(await startEchoHttpServer());
      const { client } = await connectHttp(server.url);
      const progress: Progress[] = [];
      const result = await client.callTool({ name: 'slow_progress', arguments: { steps: 3, delayMs: 200 } }, { onprogress: (p) => progress.push(p) });
      expect(textOf(result)).to.equal('done');
      expect(progress.map((p) => [p.progress, p.total])).to.deep.equal([[1, 3], [2, 3], [3, 3]]);

      const slow = { name: 'slow_progress', arguments: { steps: 5, delayMs: 150 } };
      const kept = await client.callTool(slow, { timeout: 500, resetTimeoutOnProgress: true, onprogress: () => undefined });
      expect(textOf(kept)).to.equal('done');
      const timedOut = await rejection(client.callTool(slow, { timeout: 500, onprogress: () => undefined }));
      expect(timedOut).to.be.instanceOf(SdkError).with.property('code', SdkErrorCode.RequestTimeout);
    });

    it('returns tool failures as isError results and validated structuredContent', async () => {
      const server = track(await startEchoHttpServer());
      const { client } = await connectHttp(server.url);
      const failed = await client.callTool({ name: 'fail', arguments: { message: 'disk full' } });
      expect(failed.isError).to.equal(true);
      expect(textOf(failed)).to.equal('disk full');
      const structured = await client.callTool({ name: 'structured', arguments: {} });
      expect(structured.structuredContent).to.deep.equal(STRUCTURED_OUTPUT);
      const { tools } = await client.listTools();
      expect(tools.find((tool) => tool.name === 'structured')?.outputSchema).to.have.property('type', 'object');
    });
  });

  describe('echoServer over stdio', () => {
    it('sees the env the client passed (plus the SDK default variables) and the cwd, not the parent env', async () => {
      const cwd = realpathSync(mkdtempSync(join(tmpdir(), 'airlock-echo-')));
      cleanups.push(async () => rmSync(cwd, { recursive: true, force: true }));
      process.env.AIRLOCK_FIXTURE_PARENT_ONLY = 'leak';
      cleanups.push(async () => delete process.env.AIRLOCK_FIXTURE_PARENT_ONLY);
      const { client } = await connectStdio({ ...echoStdioCommand(), env: { TASK_TOKEN: 'tok-1' }, cwd });

      const seen = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} }))) as StdioWhoami;
      expect(seen.transport).to.equal('stdio');
      expect(seen.cwd).to.equal(cwd);
      expect(seen.env.TASK_TOKEN).to.equal('tok-1');
      expect(seen.env).to.not.have.property('AIRLOCK_FIXTURE_PARENT_ONLY');
      // StdioClientTransport always merges getDefaultEnvironment() (HOME, LOGNAME, PATH, SHELL, TERM, USER) under `env`.
      if (process.env.PATH !== undefined) expect(seen.env.PATH).to.equal(process.env.PATH);
    });

    it('negotiates 2026-07-28 with an auto client (probe on a throw-away sibling process) and still streams progress', async () => {
      const { client } = await connectStdio(echoStdioCommand(), { versionNegotiation: { mode: 'auto' } });
      expect(client.getProtocolEra()).to.equal('modern');
      expect(client.getNegotiatedProtocolVersion()).to.equal(MODERN_PROTOCOL_VERSION);
      const progress: Progress[] = [];
      // Far enough apart that a loaded machine does not deliver the last notification in the same
      // read as the result (the SDK drops such a notification).
      await client.callTool({ name: 'slow_progress', arguments: { steps: 2, delayMs: 200 } }, { onprogress: (p) => progress.push(p) });
      expect(progress).to.have.length(2);
    });
  });

  describe('hangServer', () => {
    it('over stdio: an aborted call rejects at once and the server logs the cancelled request id', async () => {
      const { client, stderr } = await connectStdio(hangStdioCommand());
      const controller = new AbortController();
      const call = client.callTool({ name: 'hang', arguments: {} }, { signal: controller.signal });
      setTimeout(() => controller.abort('task cancelled'), 50);
      const error = await rejection(call);
      // The SDK reports a caller's abort as RequestTimeout, with the abort reason as the message.
      expect(error).to.be.instanceOf(SdkError).with.property('code', SdkErrorCode.RequestTimeout);
      expect((error as Error).message).to.equal('task cancelled');
      const [, requestId] = await stderr.waitFor(/^cancelled (\S+) task cancelled$/m);
      expect(requestId).to.equal('1'); // 0 was initialize
      expect(textOf(await client.callTool({ name: 'quick', arguments: {} }))).to.equal('ok');
    });

    it('over HTTP: records both an abort and a timeout as cancellations', async () => {
      const server = track(await startHangHttpServer());
      const { client } = await connectHttp(server.url);
      const controller = new AbortController();
      const call = client.callTool({ name: 'hang', arguments: {} }, { signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      await rejection(call);
      const timedOut = await rejection(client.callTool({ name: 'hang', arguments: {} }, { timeout: 100 }));
      expect(timedOut).to.be.instanceOf(SdkError).with.property('code', SdkErrorCode.RequestTimeout);
      const cancellations = await server.waitForCancellations(2);
      expect(cancellations.map((c) => c.requestId)).to.deep.equal([1, 2]);
      expect(cancellations[1]!.reason).to.match(/timed out/);
      expect(server.cancelled).to.equal(2);
    });

    it('with hangConnect: connect times out while the server holds the initialize POST, and close() still returns', async () => {
      const server = track(await startHangHttpServer({ hangConnect: true }));
      const client = newClient();
      const error = await rejection(client.connect(new StreamableHTTPClientTransport(new URL(server.url)), { timeout: 200 }));
      expect(error).to.be.instanceOf(SdkError).with.property('code', SdkErrorCode.RequestTimeout);
      expect(server.heldRequests).to.equal(1);
      await client.close();
      await server.close();
    });
  });

  describe('crashServer', () => {
    it('over stdio: crash kills the process mid-call; a new transport gets a new process', async () => {
      const { client, stderr, pid } = await connectStdio(crashStdioCommand());
      expect(textOf(await client.callTool({ name: 'ok', arguments: {} }))).to.equal(`alive ${pid}`);
      const closed = deferred<void>();
      client.onclose = () => closed.resolve();

      const error = await rejection(client.callTool({ name: 'crash', arguments: {} }));
      expect(error).to.be.instanceOf(SdkError).with.property('code', SdkErrorCode.ConnectionClosed);
      await closed.promise;
      expect(stderr.text()).to.include(`crashing ${pid}`);
      expect(isAlive(pid)).to.equal(false);
      // Not an SdkError: after the close the client just says it is not connected.
      expect(await rejection(client.callTool({ name: 'ok', arguments: {} }))).to.have.property('message', 'Not connected');

      const again = await connectStdio(crashStdioCommand());
      expect(again.pid).to.not.equal(pid);
      expect(textOf(await again.client.callTool({ name: 'ok', arguments: {} }))).to.equal(`alive ${again.pid}`);
    });

    it('over HTTP: crash drops the call with a fetch error but the session survives', async () => {
      const server = track(await startCrashHttpServer());
      const { client } = await connectHttp(server.url);
      client.onerror = () => undefined; // the transport reports the dropped socket here too
      const error = await rejection(client.callTool({ name: 'crash', arguments: {} }, { timeout: 5_000 }));
      expect(error).to.be.instanceOf(TypeError).with.property('message', 'fetch failed');
      expect(server.crashes).to.equal(1);
      expect(textOf(await client.callTool({ name: 'ok', arguments: {} }))).to.match(/^alive \d+$/);
      expect(server.sessions).to.equal(1);
    });

    it('over HTTP: after expireSessions() the old session id gets a 404 and a fresh connect starts a new session', async () => {
      const server = track(await startCrashHttpServer());
      const { client, transport } = await connectHttp(server.url);
      client.onerror = () => undefined;
      const oldSession = transport.sessionId;
      await server.expireSessions();

      const error = await rejection(client.callTool({ name: 'ok', arguments: {} }));
      expect(error).to.be.instanceOf(SdkHttpError).with.property('status', 404);
      expect(transport.sessionId).to.equal(oldSession); // the SDK neither clears nor renews it

      const renewed = new StreamableHTTPClientTransport(new URL(server.url));
      await client.connect(renewed);
      expect(renewed.sessionId).to.be.a('string').and.not.equal(oldSession);
      expect(textOf(await client.callTool({ name: 'ok', arguments: {} }))).to.match(/^alive /);
      expect(server.sessions).to.equal(2);
    });
  });

  describe('changingServer', () => {
    function listChangedClient() {
      const lists: string[][] = [];
      let wake: (() => void) | undefined;
      const options: ClientOptions = {
        listChanged: { tools: { debounceMs: 0, onChanged: (error, tools) => (lists.push(error ? [`error: ${error.message}`] : (tools ?? []).map((t) => t.name)), wake?.()) } },
      };
      const next = (count: number) =>
        new Promise<string[][]>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`only ${lists.length} list_changed refresh(es): ${JSON.stringify(lists)}`)), 5_000);
          wake = () => lists.length >= count && (clearTimeout(timer), resolve(lists));
          wake();
        });
      return { options, lists, next };
    }

    it('over HTTP: delivers list_changed from add_tool and, once the GET stream is open, from addTool()', async () => {
      const server = track(await startChangingHttpServer());
      const watcher = listChangedClient();
      const { client } = await connectHttp(server.url, watcher.options);
      expect((await client.listTools()).tools.map((t) => t.name)).to.deep.equal(['first', 'add_tool']);

      expect(textOf(await client.callTool({ name: 'add_tool', arguments: { name: 'second' } }))).to.equal('added second');
      expect((await watcher.next(1))[0]).to.deep.equal(['first', 'add_tool', 'second']);

      // An unsolicited notification only reaches a client whose GET stream is already open.
      await server.waitForGetStreams(1);
      await server.addTool('third');
      expect((await watcher.next(2))[1]).to.deep.equal(['first', 'add_tool', 'second', 'third']);
      expect(textOf(await client.callTool({ name: 'third', arguments: {} }))).to.equal('third');
    });

    it('over stdio: add_tool sends list_changed', async () => {
      const watcher = listChangedClient();
      const { client } = await connectStdio(changingStdioCommand(), watcher.options);
      await client.callTool({ name: 'add_tool', arguments: { name: 'extra' } });
      expect((await watcher.next(1))[0]).to.deep.equal(['first', 'add_tool', 'extra']);
    });

    it('paginated: listTools() aggregates every page, and a manual cursor walk sees 10 + 10 + 5', async () => {
      const server = track(await startChangingHttpServer({ paginated: true }));
      const { client } = await connectHttp(server.url);
      const all = await client.listTools();
      expect(all.tools).to.have.length(25);
      expect(all.nextCursor).to.equal(undefined);

      // listTools() without a cursor always aggregates, so the first page needs a raw request.
      const pages: Tool[][] = [];
      let page = await client.request({ method: 'tools/list', params: {} });
      pages.push(page.tools);
      while (page.nextCursor !== undefined) {
        page = await client.listTools({ cursor: page.nextCursor });
        pages.push(page.tools);
      }
      expect(pages.map((p) => p.length)).to.deep.equal([10, 10, 5]);
      expect(pages.flat().map((t) => t.name)).to.deep.equal(all.tools.map((t) => t.name));
      expect(pages[2]!.at(-1)!.name).to.equal('tool_25');

      const bad = await rejection(client.listTools({ cursor: 'not-a-cursor' }));
      expect(bad).to.be.instanceOf(ProtocolError).with.property('code', -32602);
    });
  });

  describe('modernServer (2026-07-28 only)', () => {
    it('serves an auto client statelessly, including an MRTR elicitation answered by the client handler', async () => {
      const server = track(await startModernHttpServer());
      const { client, transport } = await connectHttp(server.url, { versionNegotiation: { mode: 'auto' }, capabilities: { elicitation: { form: {} } } });
      expect(client.getProtocolEra()).to.equal('modern');
      expect(client.getNegotiatedProtocolVersion()).to.equal(MODERN_PROTOCOL_VERSION);
      expect(transport.sessionId).to.equal(undefined);
      expect(textOf(await client.callTool({ name: 'echo', arguments: { text: 'hi' } }))).to.equal('hi');

      const asked: string[] = [];
      let answer: { ok: boolean } | undefined = { ok: true };
      client.setRequestHandler('elicitation/create', (request) => {
        asked.push(request.params.message);
        return answer === undefined ? { action: 'decline' } : { action: 'accept', content: answer };
      });
      expect(textOf(await client.callTool({ name: 'confirm', arguments: {} }))).to.equal('confirmed=true');
      answer = undefined;
      expect(textOf(await client.callTool({ name: 'confirm', arguments: {} }))).to.equal('confirmed=decline');
      expect(asked).to.deep.equal(['Go ahead?', 'Go ahead?']);
    });

    it('rejects a legacy client with HTTP 400 / -32022 naming the supported version', async () => {
      const server = track(await startModernHttpServer());
      const client = newClient({ versionNegotiation: { mode: 'legacy' } });
      client.onerror = () => undefined;
      const error = await rejection(client.connect(new StreamableHTTPClientTransport(new URL(server.url))));
      expect(error).to.be.instanceOf(SdkHttpError).with.property('status', 400);
      expect((error as Error).message).to.include('-32022').and.include(MODERN_PROTOCOL_VERSION);
    });

    it('delivers toolsChanged() over the subscription that the listChanged option opens', async () => {
      const server = track(await startModernHttpServer());
      const changed = deferred<string[]>();
      const { client } = await connectHttp(server.url, {
        versionNegotiation: { mode: 'auto' },
        listChanged: { tools: { debounceMs: 0, onChanged: (_error, tools) => changed.resolve((tools ?? []).map((t) => t.name)) } },
      });
      expect(client.autoOpenedSubscription).to.not.equal(undefined);
      server.toolsChanged();
      expect(await changed.promise).to.deep.equal(['echo', 'confirm', 'hang', 'quick']);
    });

    it('cancels by aborting the request stream: the server sees its signal fire, not a notifications/cancelled', async () => {
      const server = track(await startModernHttpServer());
      const { client } = await connectHttp(server.url, { versionNegotiation: { mode: 'auto' } });
      const controller = new AbortController();
      const call = client.callTool({ name: 'hang', arguments: {} }, { signal: controller.signal });
      setTimeout(() => controller.abort('task cancelled'), 50);
      expect(await rejection(call)).to.be.instanceOf(SdkError).with.property('message', 'task cancelled');
      const [cancellation] = await server.waitForCancellations(1);
      expect(cancellation!.reason).to.match(/Connection closed/);
      expect(textOf(await client.callTool({ name: 'quick', arguments: {} }))).to.equal('ok');
    });
  });

  describe('server-everything', () => {
    async function listAndEcho(transport: Transport) {
      const client = newClient();
      await client.connect(transport);
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).to.include.members(['echo', 'get-sum', 'trigger-long-running-operation']);
      expect(textOf(await client.callTool({ name: 'echo', arguments: { message: 'hi' } }))).to.equal('Echo: hi');
    }

    it('streamableHttp on a loopback port', async () => {
      const everything = track(await startEverything('streamableHttp'));
      expect(everything.url).to.match(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
      await listAndEcho(new StreamableHTTPClientTransport(new URL(everything.url)));
      await everything.close();
      expect(isAlive(everything.pid)).to.equal(false);
    });

    it('legacy HTTP+SSE on a loopback port', async () => {
      const everything = track(await startEverything('sse'));
      expect(everything.url).to.match(/\/sse$/);
      await listAndEcho(new SSEClientTransport(new URL(everything.url)));
    });

    it('stdio, from the command it returns', async () => {
      const command = await startEverything('stdio-command');
      await listAndEcho(new StdioClientTransport({ ...command, stderr: 'ignore' }));
    });
  });
});
