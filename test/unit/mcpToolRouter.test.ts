import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from 'pino';
import { echoStdioCommand, startEchoHttpServer } from '../../fixtures/mcp/echoServer.js';
import type { EchoHttpServer, HttpWhoami } from '../../fixtures/mcp/echoServer.js';
import type { McpPoolConfig, McpServerConfig } from '../../src/config.js';
import { McpPool } from '../../src/mcp/mcpPool.js';
import { globMatch } from '../../src/runtime/tools/namePatterns.js';
import { McpToolRouter, RequiredServerError } from '../../src/runtime/tools/mcpToolRouter.js';
import type { ToolResult, ToolSession, ToolSessionRequest } from '../../src/runtime/tools/toolRouter.js';
import { rejection, waitFor } from '../support/harness.js';

const PROJECT = 'proj';
const UNREACHABLE = 'http://127.0.0.1:9/mcp';
const POOL_CONFIG: McpPoolConfig = { maxConnections: 20, idleTtlMs: 60_000, toolResultLimitChars: 10_000 };



function textOf(result: ToolResult): string {
  return result.content.map((block) => (block.type === 'text' ? block.text : `[${block.type}]`)).join('\n');
}

describe('mcpToolRouter', () => {
  describe('#globMatch()', () => {
    it('matches a name without wildcards only exactly', () => {
      expect(globMatch('echo', 'echo')).to.equal(true);
      expect(globMatch('echo', 'echo2')).to.equal(false);
      expect(globMatch('echo', 'my_echo')).to.equal(false);
      expect(globMatch('echo', 'ECHO')).to.equal(false);
    });

    it('lets * match any run of characters, the empty run included', () => {
      expect(globMatch('get_*', 'get_user')).to.equal(true);
      expect(globMatch('get_*', 'get_')).to.equal(true);
      expect(globMatch('get_*', 'set_user')).to.equal(false);
      expect(globMatch('*_user', 'delete_user')).to.equal(true);
      expect(globMatch('a*b*c', 'a--b--c')).to.equal(true);
      expect(globMatch('a*b*c', 'a--c--b')).to.equal(false);
      expect(globMatch('*', 'anything.at/all')).to.equal(true);
      expect(globMatch('*', '')).to.equal(true);
    });

    it('treats dots and other regex characters literally', () => {
      expect(globMatch('files.read', 'files.read')).to.equal(true);
      expect(globMatch('files.read', 'filesXread')).to.equal(false);
      expect(globMatch('files.*', 'files.write')).to.equal(true);
      expect(globMatch('files.*', 'filesXwrite')).to.equal(false);
      for (const literal of ['a+b', 'a?b', '(a)', '[ab]', 'a{2}', '^a$', 'a|b', 'a\\b', 'a$']) {
        expect(globMatch(literal, literal), literal).to.equal(true);
      }
      expect(globMatch('a+b', 'aab')).to.equal(false);
      expect(globMatch('a?b', 'b')).to.equal(false);
      expect(globMatch('[ab]', 'a')).to.equal(false);
      expect(globMatch('a|b', 'a')).to.equal(false);
      expect(globMatch('a{2}', 'aa')).to.equal(false);
    });
  });

  describe('McpToolRouter', () => {
    let echo: EchoHttpServer;
    let workspaceDir: string;
    let pool: McpPool;
    const sessions: ToolSession[] = [];

    before(async () => {
      echo = await startEchoHttpServer();
    });
    after(async () => {
      await echo.close();
    });
    beforeEach(() => {
      workspaceDir = mkdtempSync(join(tmpdir(), 'airlock-router-'));
      pool = new McpPool({ maxConnections: POOL_CONFIG.maxConnections, idleTtlMs: POOL_CONFIG.idleTtlMs });
    });
    afterEach(async () => {
      await Promise.all(sessions.splice(0).map((session) => session.close()));
      await pool.close();
      rmSync(workspaceDir, { recursive: true, force: true });
    });

    function router(servers: Record<string, McpServerConfig>, logger: Logger = pino({ level: 'silent' })): McpToolRouter {
      return new McpToolRouter({ pool, projects: { [PROJECT]: { mcpServers: servers } }, poolConfig: POOL_CONFIG, builtin: undefined, logger });
    }

    /** A request with the given variables; `secrets` are the keys among them that are secrets. */
    function request(variables: Record<string, string> = {}, secrets: string[] = [], taskId = 'task-1') {
      const statuses: string[] = [];
      const controller = new AbortController();
      const value: ToolSessionRequest = {
        taskId, projectId: PROJECT, variables, secretKeys: new Set(secrets), workspaceDir, prepareWorkspace: async () => {},
        onStatus: (message) => statuses.push(message), signal: controller.signal,
      };
      return { request: value, statuses, controller };
    }

    async function open(target: McpToolRouter, req: ToolSessionRequest): Promise<ToolSession> {
      const session = await target.openSession(req);
      sessions.push(session);
      return session;
    }

    async function call(session: ToolSession, name: string, args: Record<string, unknown> = {}): Promise<ToolResult> {
      return session.callTool({ callId: 'call-1', name, args }, { signal: new AbortController().signal });
    }

    describe('#openSession()', () => {
      it('lists a server\'s tools as <server>__<tool> and calls them', async () => {
        const session = await open(router({ echo: { type: 'http', url: echo.url } }), request().request);
        const names = (await session.listTools()).map((tool) => tool.name).sort();
        expect(names).to.deep.equal(['echo__echo', 'echo__fail', 'echo__flood_progress', 'echo__slow_progress', 'echo__structured', 'echo__whoami']);
        const result = await call(session, 'echo__echo', { text: 'hello' });
        expect(result).to.deep.equal({ content: [{ type: 'text', text: 'hello' }], isError: false, server: 'echo' });
        expect(session.serverOf('echo__echo')).to.equal('echo');
      });

      it('keeps only the tools includeTools names', async () => {
        const session = await open(router({ echo: { type: 'http', url: echo.url, includeTools: ['echo', 'slow_*'] } }), request().request);
        expect((await session.listTools()).map((tool) => tool.name).sort()).to.deep.equal(['echo__echo', 'echo__slow_progress']);
      });

      it('drops the tools excludeTools names, and they cannot be called', async () => {
        const session = await open(router({ echo: { type: 'http', url: echo.url, excludeTools: ['fail', 'who*'] } }), request().request);
        expect((await session.listTools()).map((tool) => tool.name).sort()).to.deep.equal(['echo__echo', 'echo__flood_progress', 'echo__slow_progress', 'echo__structured']);
        const result = await call(session, 'echo__whoami');
        expect(result.isError).to.equal(true);
        expect(textOf(result)).to.match(/Unknown tool/);
      });

      it('applies excludeTools after includeTools', async () => {
        const session = await open(router({ echo: { type: 'http', url: echo.url, includeTools: ['*'], excludeTools: ['fail'] } }), request().request);
        expect((await session.listTools()).map((tool) => tool.name)).not.to.include('echo__fail');
        expect((await session.listTools()).map((tool) => tool.name)).to.include('echo__echo');
      });

      it('resolves templates per task: each task\'s header reaches the server, over its own connection', async () => {
        const target = router({ echo: { type: 'http', url: echo.url, headers: { 'X-Tenant': '{{mcp.TENANT}}' } } });
        const sessionsBefore = echo.sessions;
        const a = await open(target, request({ TENANT: 'tenant-a' }, [], 'task-a').request);
        const b = await open(target, request({ TENANT: 'tenant-b' }, [], 'task-b').request);
        const seenA = JSON.parse(textOf(await call(a, 'echo__whoami'))) as HttpWhoami;
        const seenB = JSON.parse(textOf(await call(b, 'echo__whoami'))) as HttpWhoami;
        expect(seenA.headers['x-tenant']).to.equal('tenant-a');
        expect(seenB.headers['x-tenant']).to.equal('tenant-b');
        expect(seenA.sessionId).to.not.equal(seenB.sessionId);
        expect(echo.sessions - sessionsBefore).to.equal(2);
      });

      it('shares one connection between tasks that resolved the same values', async () => {
        const target = router({ echo: { type: 'http', url: echo.url, headers: { 'X-Tenant': '{{mcp.TENANT}}' } } });
        const sessionsBefore = echo.sessions;
        await open(target, request({ TENANT: 'same' }, [], 'task-a').request);
        await open(target, request({ TENANT: 'same' }, [], 'task-b').request);
        expect(echo.sessions - sessionsBefore).to.equal(1);
        expect(pool.stats()).to.include({ open: 1, leased: 1 });
      });

      describe('a missing template key', () => {
        it('skips the server with a status naming server and key, never a value', async () => {
          const { request: req, statuses } = request({ OTHER: 'other-s3cret-value', TOKEN_B: 'b-s3cret' }, ['OTHER', 'TOKEN_B']);
          const session = await open(router({
            echo: { type: 'http', url: echo.url },
            needy: { type: 'http', url: `${echo.url}?k={{mcp.TOKEN_B}}`, headers: { Authorization: 'Bearer {{mcp.API_TOKEN}}' } },
          }), req);
          expect(statuses).to.have.length(1);
          expect(statuses[0]).to.include('"needy"');
          expect(statuses[0]).to.include('{{mcp.API_TOKEN}}');
          expect(statuses[0]).not.to.include('TOKEN_B}}');
          expect(statuses[0]).not.to.include('other-s3cret-value');
          expect(statuses[0]).not.to.include('b-s3cret');
          const names = (await session.listTools()).map((tool) => tool.name);
          expect(names).to.include('echo__echo');
          expect(names.filter((name) => name.startsWith('needy__'))).to.deep.equal([]);
        });

        it('fails the session with RequiredServerError naming server and key when the server is required', async () => {
          const { request: req } = request({ OTHER: 'other-s3cret-value' }, ['OTHER']);
          const err = await rejection(router({ needy: { type: 'http', url: echo.url, headers: { Authorization: 'Bearer {{mcp.API_TOKEN}}' }, required: true } }).openSession(req));
          expect(err).to.be.instanceOf(RequiredServerError);
          expect((err as Error).message).to.include('"needy"').and.to.include('{{mcp.API_TOKEN}}');
          expect((err as Error).message).not.to.include('other-s3cret-value');
        });

        it('releases the connections it already started when a required server fails the session', async () => {
          const { request: req } = request({});
          const sessionsBefore = echo.sessions;
          const err = await rejection(router({
            echo: { type: 'http', url: echo.url },
            needy: { type: 'http', url: echo.url, headers: { Authorization: 'Bearer {{mcp.API_TOKEN}}' }, required: true },
          }).openSession(req));
          expect(err).to.be.instanceOf(RequiredServerError);
          await waitFor(() => echo.sessions > sessionsBefore, 'the echo connect to finish');
          await waitFor(() => pool.stats().leased === 0, 'the echo lease to be released', 2_000);
        });
      });

      describe('an unreachable server', () => {
        it('reports it unavailable and the session still works for the others', async () => {
          const { request: req, statuses } = request();
          const session = await open(router({ down: { type: 'http', url: UNREACHABLE, timeout: 1_000 }, echo: { type: 'http', url: echo.url } }), req);
          expect(statuses).to.have.length(1);
          expect(statuses[0]).to.include('"down"').and.to.include('unavailable');
          const names = (await session.listTools()).map((tool) => tool.name);
          expect(names).to.include('echo__echo');
          expect(names.filter((name) => name.startsWith('down__'))).to.deep.equal([]);
          expect(textOf(await call(session, 'echo__echo', { text: 'still here' }))).to.equal('still here');
          expect(pool.stats()).to.include({ open: 1, leased: 1 });
        });

        it('fails the session with RequiredServerError when the server is required, and releases the others', async () => {
          const { request: req } = request();
          const err = await rejection(router({ echo: { type: 'http', url: echo.url }, down: { type: 'http', url: UNREACHABLE, timeout: 1_000, required: true } }).openSession(req));
          expect(err).to.be.instanceOf(RequiredServerError);
          expect((err as Error).message).to.include('"down"');
          await waitFor(() => pool.stats().leased === 0, 'the echo lease to be released');
        });

        it('never shows a secret from the URL in the status', async () => {
          const token = 'tok3n-VALUE';
          const { request: req, statuses } = request({ TOKEN: token }, ['TOKEN']);
          await open(router({ down: { type: 'http', url: `${UNREACHABLE}?token={{mcp.TOKEN}}`, timeout: 1_000 } }), req);
          expect(statuses).to.have.length(1);
          expect(statuses[0]).to.include('"down"');
          expect(statuses[0]).not.to.include(token);
        });

        it('scrubs a secret the transport put in its error message to [secret:KEY], in the status and the log', async () => {
          // fetch refuses URLs with credentials and quotes the whole URL, encoded token included.
          const token = 'p@ss w/rd&more';
          const logs: string[] = [];
          const logger = pino({ level: 'warn' }, new Writable({ write: (chunk: Buffer, _encoding, done) => void (logs.push(chunk.toString('utf8')), done()) }));
          const { request: req, statuses } = request({ TOKEN: token }, ['TOKEN']);
          await open(router({ down: { type: 'http', url: 'http://user:{{mcp.TOKEN}}@127.0.0.1:9/mcp', timeout: 1_000 } }, logger), req);
          expect(statuses).to.have.length(1);
          expect(statuses[0]).to.include('[secret:TOKEN]');
          for (const text of [statuses[0]!, ...logs]) {
            expect(text).not.to.include(token);
            expect(text).not.to.include(encodeURIComponent(token));
          }
          expect(logs.join('')).to.include('[secret:TOKEN]');
        });

        it('scrubs a secret from the RequiredServerError message', async () => {
          const token = 'p@ss w/rd&more';
          const { request: req } = request({ TOKEN: token }, ['TOKEN']);
          const err = await rejection(router({ down: { type: 'http', url: 'http://user:{{mcp.TOKEN}}@127.0.0.1:9/mcp', timeout: 1_000, required: true } }).openSession(req));
          expect(err).to.be.instanceOf(RequiredServerError);
          expect((err as Error).message).to.include('[secret:TOKEN]');
          expect((err as Error).message).not.to.include(encodeURIComponent(token));
        });
      });

      it('skips a disabled server', async () => {
        const { request: req, statuses } = request();
        const session = await open(router({ off: { type: 'http', url: UNREACHABLE, enabled: false }, echo: { type: 'http', url: echo.url } }), req);
        expect(statuses).to.deep.equal([]);
        expect((await session.listTools()).map((tool) => tool.name).filter((name) => name.startsWith('off__'))).to.deep.equal([]);
      });

      describe('the built-in server', () => {
        const withBuiltin = () => new McpToolRouter({ pool, projects: { [PROJECT]: {} }, poolConfig: POOL_CONFIG, builtin: () => echoStdioCommand(), logger: pino({ level: 'silent' }) });

        it('starts one process to list its tools for sessions opened at the same time, and one per task only when a tool is called', async () => {
          const target = withBuiltin();
          const opened = await Promise.all(['task-1', 'task-2', 'task-3', 'task-4'].map((id) => open(target, request({}, [], id).request)));
          const lists = await Promise.all(opened.map((session) => session.listTools()));
          for (const tools of lists) expect(tools.map((tool) => tool.name)).to.include('echo');
          expect(pool.stats().connects).to.equal(1);
          expect(textOf(await call(opened[3]!, 'echo', { text: 'hi' }))).to.match(/hi/);
          expect(pool.stats().connects).to.equal(2);
        });

        it('lets a waiting session start a process of its own when the first one fails to list the tools', async () => {
          let starts = 0;
          // The first launch is a process that exits at once; the next ones are the echo server.
          const target = new McpToolRouter({
            pool, projects: { [PROJECT]: {} }, poolConfig: POOL_CONFIG, logger: pino({ level: 'silent' }),
            builtin: () => (starts++ === 0 ? { command: process.execPath, args: ['-e', 'process.exit(3)'] } : echoStdioCommand()),
          });
          const [first, second] = await Promise.allSettled([target.openSession(request({}, [], 'task-1').request), target.openSession(request({}, [], 'task-2').request)]);
          expect(first.status).to.equal('rejected');
          expect(String((first as PromiseRejectedResult).reason)).to.match(/required but could not be connected/);
          expect(second.status).to.equal('fulfilled');
          const session = (second as PromiseFulfilledResult<ToolSession>).value;
          sessions.push(session);
          expect((await session.listTools()).map((tool) => tool.name)).to.include('echo');
          expect(starts).to.equal(2);
        });

        it('stops waiting for another session\'s listing when its own task is cancelled', async () => {
          const target = withBuiltin();
          const lister = open(target, request({}, [], 'task-1').request);
          const { request: cancelled, controller } = request({}, [], 'task-2');
          const waiting = target.openSession(cancelled);
          controller.abort(new Error('cancelled'));
          expect(String(await rejection(waiting))).to.match(/cancelled/);
          await (await lister).close();
        });
      });

      it('opens an empty session for a project without servers', async () => {
        const target = new McpToolRouter({ pool, projects: {}, poolConfig: POOL_CONFIG, builtin: undefined, logger: pino({ level: 'silent' }) });
        const session = await open(target, request().request);
        expect(await session.listTools()).to.deep.equal([]);
      });
    });

    describe('ToolSession#callTool()', () => {
      it('answers an unknown tool name with an isError result, not an exception', async () => {
        const session = await open(router({ echo: { type: 'http', url: echo.url } }), request().request);
        await session.listTools();
        const result = await call(session, 'echo__no_such_tool');
        expect(result.isError).to.equal(true);
        expect(textOf(result)).to.include('Unknown tool').and.to.include('echo__no_such_tool');
      });

      it('calls a tool the model names before the list was fetched', async () => {
        const session = await open(router({ echo: { type: 'http', url: echo.url } }), request().request);
        expect(textOf(await call(session, 'echo__echo', { text: 'early' }))).to.equal('early');
      });

      it('returns a tool failure as an isError result naming the server', async () => {
        const session = await open(router({ echo: { type: 'http', url: echo.url } }), request().request);
        await session.listTools();
        const result = await call(session, 'echo__fail', { message: 'bad input' });
        expect(result).to.deep.equal({ content: [{ type: 'text', text: 'bad input' }], isError: true, server: 'echo' });
      });

      it('turns a tool timeout into an isError result', async () => {
        const session = await open(router({ echo: { type: 'http', url: echo.url, toolTimeout: 100 } }), request().request);
        await session.listTools();
        const result = await call(session, 'echo__slow_progress', { steps: 1, delayMs: 2_000 });
        expect(result.isError).to.equal(true);
        expect(textOf(result)).to.include('timed out after 100 ms');
      });
    });

    describe('ToolSession#close()', () => {
      it('releases the session\'s leases', async () => {
        const session = await router({ echo: { type: 'http', url: echo.url } }).openSession(request().request);
        await session.listTools();
        expect(pool.stats().leased).to.equal(1);
        await session.close();
        expect(pool.stats()).to.include({ leased: 0, open: 1 });
      });

      it('releases once when closed twice', async () => {
        const target = router({ echo: { type: 'http', url: echo.url } });
        const kept = await open(target, request({}, [], 'task-a').request);
        const closed = await target.openSession(request({}, [], 'task-b').request);
        await closed.close();
        await closed.close();
        expect(pool.stats().leased).to.equal(1);
        expect(textOf(await call(kept, 'echo__echo', { text: 'still leased' }))).to.equal('still leased');
      });
    });
  });
});
