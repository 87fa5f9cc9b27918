import { expect } from 'chai';
import { startEchoHttpServer, echoStdioCommand } from '../../fixtures/mcp/echoServer.js';
import type { EchoHttpServer } from '../../fixtures/mcp/echoServer.js';
import { hangStdioCommand, startHangHttpServer } from '../../fixtures/mcp/hangServer.js';
import { crashStdioCommand, startCrashHttpServer } from '../../fixtures/mcp/crashServer.js';
import { startChangingHttpServer } from '../../fixtures/mcp/changingServer.js';
import { startModernHttpServer } from '../../fixtures/mcp/modernServer.js';
import { startEverything } from '../../fixtures/mcp/everything.js';
import type { McpServerConfig } from '../../src/config.js';
import { outputs, runTask, script, startWithServers } from '../support/mcpHarness.js';
import { waitFor, waitForStatus } from '../support/harness.js';
import { isRunning, sandboxProcesses, sandboxProcessesOf } from '../support/processTree.js';

describe('McpPool through the task API', function () {
  this.timeout(60_000);

  describe('tools end to end', () => {
    let echo: EchoHttpServer;
    before(async () => {
      echo = await startEchoHttpServer();
    });
    after(async () => echo.close());

    it('runs the built-in workspace tools and a configured server\'s tools in one task, with events naming the server', async () => {
      const airlock = await startWithServers({ echo: { type: 'http', url: echo.url } });
      try {
        const { task, events } = await runTask(airlock, {
          message: script(['write_file', { path: 'notes/a.txt', content: 'alpha' }], ['run_shell_command', { command: 'cat notes/a.txt && echo " beta"' }], ['echo__echo', { text: 'gamma' }]),
        });
        expect(task.status, JSON.stringify(task.error)).to.equal('completed');
        const [written, shell, echoed] = outputs(task);
        expect(written).to.match(/Created notes\/a\.txt/);
        expect(shell).to.include('alpha beta');
        expect(echoed).to.include('gamma');
        const calls = events.filter((e) => e.event === 'tool_call');
        expect(calls.map((e) => [e.data.toolName, e.data.server, e.data.status])).to.deep.equal([
          ['write_file', 'workspace', 'executing'], ['run_shell_command', 'workspace', 'executing'], ['echo__echo', 'echo', 'executing'],
        ]);
        expect(events.filter((e) => e.event === 'tool_result').map((e) => e.data.status)).to.deep.equal(['success', 'success', 'success']);
      } finally {
        await airlock.stop();
      }
    });

    it('reports progress notifications as tool_progress events and isError results as tool errors', async () => {
      const airlock = await startWithServers({ echo: { type: 'http', url: echo.url } });
      try {
        const { task, events } = await runTask(airlock, { message: script(['echo__slow_progress', { steps: 3, delayMs: 20 }], ['echo__fail', { message: 'nope' }], ['echo__structured', {}]) });
        const progress = events.filter((e) => e.event === 'tool_progress');
        expect(progress.length).to.be.at.least(2);
        expect(progress[0]!.data).to.include({ callId: 'toolu_scripted_1' });
        expect(progress[0]!.data.progress).to.be.a('number');
        const results = events.filter((e) => e.event === 'tool_result');
        expect(results.map((e) => e.data.status)).to.deep.equal(['success', 'error', 'success']);
        expect(results[1]!.data.output).to.include('nope');
        expect(outputs(task)[2]).to.include('Lisbon');
      } finally {
        await airlock.stop();
      }
    });
  });

  describe('{{mcp.KEY}} templates and sharing', () => {
    let echo: EchoHttpServer;
    beforeEach(async () => {
      echo = await startEchoHttpServer();
    });
    afterEach(async () => echo.close());

    it('resolves headers and URL per task, shares a connection only between tasks with the same values', async () => {
      const airlock = await startWithServers({
        echo: { type: 'http', url: `${echo.url}?tenant={{ mcp.TENANT }}`, headers: { Authorization: 'Bearer {{mcp.TOKEN}}' } },
      }, { project: { builtinTools: false } });
      try {
        const whoami = async (secrets: Record<string, string>, env: Record<string, string>) => {
          const { task } = await runTask(airlock, { message: script(['echo__whoami', {}]), secrets, env });
          expect(task.status, JSON.stringify(task.error)).to.equal('completed');
          return JSON.parse(task.output.toolCalls[0].output.replace(/\[secret:(\w+)\]/g, 'SCRUBBED_$1'));
        };
        const a1 = await whoami({ TOKEN: 'token-aaaa-1111' }, { TENANT: 'acme & co' });
        expect(a1.headers.authorization).to.equal('Bearer SCRUBBED_TOKEN');
        expect(a1.url).to.equal('/mcp?tenant=acme%20%26%20co');
        const a2 = await whoami({ TOKEN: 'token-aaaa-1111' }, { TENANT: 'acme & co' });
        expect(a2.sessionId).to.equal(a1.sessionId);
        expect(echo.sessions).to.equal(1);
        const b = await whoami({ TOKEN: 'token-bbbb-2222' }, { TENANT: 'acme & co' });
        expect(b.sessionId).not.to.equal(a1.sessionId);
        expect(echo.sessions).to.equal(2);
        // The fixture saw the real values; nothing of Airlock's kept them.
        expect(airlock.logs.join('\n')).not.to.include('token-aaaa-1111');
      } finally {
        await airlock.stop();
      }
    });

    it('skips a server whose template has no value (status event naming server and KEY), or fails the task when it is required', async () => {
      const airlock = await startWithServers({
        echo: { type: 'http', url: echo.url, headers: { 'X-Key': '{{mcp.MISSING_KEY}}' } },
        strict: { type: 'http', url: echo.url, headers: { 'X-Key': '{{mcp.STRICT_KEY}}' }, required: true, enabled: true },
      }, { project: { builtinTools: false } });
      try {
        const failed = await runTask(airlock, { message: '/reply hi' });
        expect(failed.task.status).to.equal('failed');
        expect(failed.task.errorCode).to.equal('EXECUTION_ERROR');
        expect(failed.task.error).to.include('"strict"').and.include('{{mcp.STRICT_KEY}}');
        const skipped = await runTask(airlock, { message: '/reply hi', secrets: { STRICT_KEY: 'strict-value-123' } });
        expect(skipped.task.status).to.equal('completed');
        const status = skipped.events.find((e) => e.event === 'status' && /skipped/.test(e.data.message ?? ''));
        expect(status?.data.message).to.include('"echo"').and.include('{{mcp.MISSING_KEY}}');
        expect(JSON.stringify(skipped.events)).not.to.include('strict-value-123');
      } finally {
        await airlock.stop();
      }
    });

    it('spawns stdio servers per task in the workspace (/workspace in the sandbox) with only the task\'s env and secrets', async () => {
      const command = echoStdioCommand();
      const airlock = await startWithServers({
        local: { type: 'stdio', command: command.command, args: command.args, env: { FROM_CONFIG: 'x-{{mcp.REGION}}' } },
      }, { project: { builtinTools: false }, env: { ANTHROPIC_BASE_URL: 'http://127.0.0.1:9' } });
      process.env.AIRLOCK_TEST_LEAK = 'must-not-leak';
      try {
        const { task } = await runTask(airlock, { message: script(['local__whoami', {}]), env: { REGION: 'eu' }, secrets: { API_TOKEN: 'tok-xyz-987' } });
        expect(task.status, JSON.stringify(task.error)).to.equal('completed');
        const seen = JSON.parse(task.output.toolCalls[0].output);
        expect(seen.cwd).to.equal('/workspace');
        expect(seen.env).to.include({ REGION: 'eu', API_TOKEN: '[secret:API_TOKEN]', FROM_CONFIG: 'x-eu', HOME: '/workspace' });
        const names = Object.keys(seen.env);
        for (const name of names) expect(name, `${name} leaked into the server`).not.to.match(/^(AIRLOCK_|ANTHROPIC_|npm_|MOCHA)/);
        expect(seen.env.PATH).to.be.a('string');
      } finally {
        delete process.env.AIRLOCK_TEST_LEAK;
        await airlock.stop();
      }
    });
  });

  describe('resilience', () => {
    it('goes on without a server that cannot be connected, with a status event', async () => {
      const airlock = await startWithServers({ gone: { type: 'http', url: 'http://127.0.0.1:9/mcp', timeout: 2_000 } }, { project: { builtinTools: false } });
      try {
        const { task, events } = await runTask(airlock, { message: '/reply still fine' });
        expect(task.status).to.equal('completed');
        expect(events.some((e) => e.event === 'status' && /"gone" is unavailable/.test(e.data.message ?? ''))).to.equal(true);
      } finally {
        await airlock.stop();
      }
    });

    it('ends a hung call at its timeout with a tool error, and cancels it on the server', async () => {
      const hang = await startHangHttpServer();
      const airlock = await startWithServers({ slow: { type: 'http', url: hang.url, toolTimeout: 500 } }, { project: { builtinTools: false } });
      try {
        const started = Date.now();
        const { task } = await runTask(airlock, { message: script(['slow__hang', {}], ['slow__quick', {}]) });
        expect(Date.now() - started).to.be.below(15_000);
        expect(task.output.toolCalls.map((c: { status: string }) => c.status)).to.deep.equal(['error', 'success']);
        expect(task.output.toolCalls[0].output).to.match(/timed out after 500 ms/);
        await hang.waitForCancellations(1);
      } finally {
        await airlock.stop();
        await hang.close();
      }
    });

    it('sends notifications/cancelled to the server when the task is cancelled mid-call', async () => {
      const hang = await startHangHttpServer();
      const airlock = await startWithServers({ slow: { type: 'http', url: hang.url } }, { project: { builtinTools: false } });
      try {
        const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['slow__hang', {}]) } });
        const id = res.body.data.id;
        await waitFor(async () => (await airlock.api(`/tasks/${id}`)).body.data.output?.toolCalls?.length, 'the call');
        await airlock.api(`/tasks/${id}`, { method: 'DELETE' });
        const [cancellation] = await hang.waitForCancellations(1);
        expect(cancellation).to.exist;
        expect((await airlock.api(`/tasks/${id}`)).body.data.status).to.equal('cancelled');
      } finally {
        await airlock.stop();
        await hang.close();
      }
    });

    it('gives a call that crashes a stdio server a tool error, and the next call reconnects', async () => {
      const command = crashStdioCommand();
      const airlock = await startWithServers({ fragile: { type: 'stdio', command: command.command, args: command.args } }, { project: { builtinTools: false } });
      try {
        const { task } = await runTask(airlock, { message: script(['fragile__ok', {}], ['fragile__crash', {}], ['fragile__ok', {}]) });
        expect(task.status).to.equal('completed');
        const [before, crash, after] = task.output.toolCalls;
        expect([before.status, crash.status, after.status]).to.deep.equal(['success', 'error', 'success']);
        expect(crash.output).to.match(/fragile/);
        // A pid seen inside a sandbox is its own namespace's (always the same): count connects instead.
        expect(airlock.pool.stats().connects).to.equal(2);
      } finally {
        await airlock.stop();
      }
    });

    it('re-establishes an expired HTTP session (404) without failing the call', async () => {
      const crash = await startCrashHttpServer();
      const airlock = await startWithServers({ remote: { type: 'http', url: crash.url } }, { project: { builtinTools: false } });
      try {
        const first = await runTask(airlock, { message: script(['remote__ok', {}]) });
        expect(first.task.output.toolCalls[0].status).to.equal('success');
        await crash.expireSessions();
        const second = await runTask(airlock, { message: script(['remote__ok', {}]) });
        expect(second.task.output.toolCalls[0].status, second.task.output.toolCalls[0].output).to.equal('success');
        expect(crash.sessions).to.equal(2);
      } finally {
        await airlock.stop();
        await crash.close();
      }
    });

    it('picks up tools added mid-task (list_changed, or a re-list on demand)', async () => {
      const changing = await startChangingHttpServer();
      const airlock = await startWithServers({ live: { type: 'http', url: changing.url } }, { project: { builtinTools: false } });
      try {
        const { task } = await runTask(airlock, { message: script(['live__add_tool', { name: 'second' }], ['live__second', {}]) });
        expect(task.output.toolCalls.map((c: { status: string }) => c.status), JSON.stringify(task.output.toolCalls)).to.deep.equal(['success', 'success']);
      } finally {
        await airlock.stop();
        await changing.close();
      }
    });

    it('lists every page of a paginated server, and applies includeTools/excludeTools', async () => {
      const changing = await startChangingHttpServer({ paginated: true, toolCount: 25, pageSize: 10 });
      const airlock = await startWithServers({ paged: { type: 'http', url: changing.url, includeTools: ['tool_*', 'first'], excludeTools: ['tool_1*'] } }, { project: { builtinTools: false } });
      try {
        const { task } = await runTask(airlock, { message: script(['paged__tool_25', {}], ['paged__first', {}], ['paged__tool_12', {}], ['paged__add_tool', { name: 'x' }]) });
        expect(task.output.toolCalls.map((c: { status: string }) => c.status)).to.deep.equal(['success', 'success', 'error', 'error']);
        expect(task.output.toolCalls[2].output).to.match(/Unknown tool/);
      } finally {
        await airlock.stop();
        await changing.close();
      }
    });
  });

  describe('@modelcontextprotocol/server-everything', () => {
    for (const mode of ['stdio', 'sse', 'streamableHttp'] as const) {
      it(`lists its tools and calls them over ${mode}: text, progress, structured output, an error result`, async () => {
        const http = mode === 'stdio' ? undefined : await startEverything(mode);
        const command = mode === 'stdio' ? await startEverything('stdio-command') : undefined;
        const server: McpServerConfig = http ? { type: mode === 'sse' ? 'sse' : 'http', url: http.url } : { type: 'stdio', command: command!.command, args: command!.args };
        const airlock = await startWithServers({ everything: server }, { project: { builtinTools: false } });
        try {
          const { task, events } = await runTask(airlock, {
            message: script(
              ['everything__echo', { message: `hello over ${mode}` }],
              ['everything__trigger-long-running-operation', { duration: 0.3, steps: 3 }],
              ['everything__get-structured-content', { location: 'New York' }],
              ['everything__get-sum', { a: 'not a number', b: 2 }],
            ),
          });
          expect(task.status, JSON.stringify(task.error)).to.equal('completed');
          const calls = task.output.toolCalls;
          expect(calls.map((c: { status: string }) => c.status), JSON.stringify(calls)).to.deep.equal(['success', 'success', 'success', 'error']);
          expect(calls[0].output).to.include(`hello over ${mode}`);
          expect(events.filter((e) => e.event === 'tool_progress' && e.data.callId === calls[1].callId).length).to.be.at.least(1);
          expect(calls[2].output).to.match(/temperature/);
          expect(calls.every((c: { server: string }) => c.server === 'everything')).to.equal(true);
        } finally {
          await airlock.stop();
          await http?.close();
        }
      });
    }
  });

  describe('protocol revisions', () => {
    it('negotiates 2026-07-28 with a modern-only server on protocol auto, and reports it unavailable on legacy', async () => {
      const modern = await startModernHttpServer();
      const airlock = await startWithServers({
        modern: { type: 'http', url: modern.url },
        old: { type: 'http', url: modern.url, protocol: 'legacy', timeout: 5_000 },
      }, { project: { builtinTools: false } });
      try {
        const { task, events } = await runTask(airlock, { message: script(['modern__echo', { text: 'from the future' }]) });
        expect(task.output.toolCalls[0]).to.include({ status: 'success' });
        expect(task.output.toolCalls[0].output).to.include('from the future');
        expect(events.some((e) => e.event === 'status' && /"old" is unavailable/.test(e.data.message ?? ''))).to.equal(true);
      } finally {
        await airlock.stop();
        await modern.close();
      }
    });
  });

  describe('lifecycle', () => {
    it('leaves no stdio server process behind after a task ends or at shutdown', async () => {
      const crash = crashStdioCommand();
      const hang = hangStdioCommand();
      const airlock = await startWithServers({
        local: { type: 'stdio', command: crash.command, args: crash.args },
        stuck: { type: 'stdio', command: hang.command, args: hang.args },
      }, { config: { server: { shutdownGraceMs: 200 } } });
      const running = (fragment: string) => sandboxProcesses(airlock.dataDir).filter((p) => p.args.includes(fragment));
      let seen: number[] = [];
      try {
        const { task } = await runTask(airlock, { message: script(['local__ok', {}]) });
        expect(task.status).to.equal('completed');
        await waitFor(() => sandboxProcessesOf((workspace) => workspace.endsWith(`/${task.id}`)).length === 0, 'the finished task\'s sandboxes to exit', 10_000);
        const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['stuck__hang', {}]) } });
        await waitFor(async () => (await airlock.api(`/tasks/${res.body.data.id}`)).body.data.output?.toolCalls?.length, 'the hanging call');
        expect(running('hangServer.ts')).to.not.be.empty;
        expect(running('crashServer.ts')).to.not.be.empty;
        seen = sandboxProcesses(airlock.dataDir).map((p) => p.pid);
      } finally {
        await airlock.stop();
      }
      await waitFor(() => seen.every((pid) => !isRunning(pid)) && sandboxProcesses(airlock.dataDir).length === 0, 'every server process to exit', 10_000);
      expect(airlock.pool.stats().open).to.equal(0);
    });
  });
});
