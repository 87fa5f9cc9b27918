import { expect } from 'chai';
import { echoStdioCommand, startEchoHttpServer } from '../../fixtures/mcp/echoServer.js';
import type { EchoHttpServer, StdioWhoami } from '../../fixtures/mcp/echoServer.js';
import { startHangHttpServer } from '../../fixtures/mcp/hangServer.js';
import type { HangHttpServer } from '../../fixtures/mcp/hangServer.js';
import type { McpServerConfig } from '../../src/config.js';
import type { ConnectionSpec } from '../../src/mcp/mcpConnection.js';
import { McpPool, PoolFullError } from '../../src/mcp/mcpPool.js';
import type { Lease, McpPoolOptions } from '../../src/mcp/mcpPool.js';
import { isAlive, rejection, waitFor } from '../support/harness.js';

const PROJECT = 'proj';




describe('McpPool', () => {
  const pools: McpPool[] = [];
  const leases: Lease[] = [];

  function newPool(options: Partial<McpPoolOptions> = {}): McpPool {
    const pool = new McpPool({ maxConnections: 10, idleTtlMs: 60_000, ...options });
    pools.push(pool);
    return pool;
  }

  function spec(pool: McpPool, serverName: string, config: McpServerConfig, taskId?: string): ConnectionSpec {
    return { key: pool.fingerprint(PROJECT, serverName, config, taskId), projectId: PROJECT, serverName, config };
  }

  async function acquire(pool: McpPool, connectionSpec: ConnectionSpec): Promise<Lease> {
    const lease = await pool.acquire(connectionSpec);
    leases.push(lease);
    return lease;
  }

  afterEach(async () => {
    for (const lease of leases.splice(0)) lease.release();
    await Promise.all(pools.splice(0).map((pool) => pool.close()));
  });

  describe('#fingerprint()', () => {
    const config: McpServerConfig = { type: 'http', url: 'https://mcp.example.com/mcp?tenant=a', headers: { Authorization: 'Bearer t0k3n', 'X-Team': 'red' }, timeout: 5_000 };

    it('is equal for equal configs whatever the order of their keys', () => {
      const pool = newPool();
      const reordered: McpServerConfig = { timeout: 5_000, headers: { 'X-Team': 'red', Authorization: 'Bearer t0k3n' }, url: 'https://mcp.example.com/mcp?tenant=a', type: 'http' };
      expect(pool.fingerprint(PROJECT, 'srv', reordered)).to.equal(pool.fingerprint(PROJECT, 'srv', config));
    });

    it('ignores fields that are undefined', () => {
      const pool = newPool();
      expect(pool.fingerprint(PROJECT, 'srv', { ...config, toolTimeout: undefined })).to.equal(pool.fingerprint(PROJECT, 'srv', config));
    });

    it('differs when a header value, the URL, the project, the server or the task differs', () => {
      const pool = newPool();
      const base = pool.fingerprint(PROJECT, 'srv', config);
      const variants = [
        pool.fingerprint(PROJECT, 'srv', { ...config, headers: { ...config.headers, Authorization: 'Bearer other' } }),
        pool.fingerprint(PROJECT, 'srv', { ...config, url: 'https://mcp.example.com/mcp?tenant=b' }),
        pool.fingerprint('other-project', 'srv', config),
        pool.fingerprint(PROJECT, 'other-server', config),
        pool.fingerprint(PROJECT, 'srv', config, 'task-1'),
        pool.fingerprint(PROJECT, 'srv', config, 'task-2'),
      ];
      expect(new Set([base, ...variants]).size).to.equal(variants.length + 1);
    });

    it('is an HMAC in hex that never contains the values it was made from', () => {
      const pool = newPool();
      const fingerprint = pool.fingerprint(PROJECT, 'srv', config);
      expect(fingerprint).to.match(/^[0-9a-f]{64}$/);
      for (const value of ['t0k3n', 'Bearer', 'mcp.example.com', 'tenant', PROJECT, 'srv']) expect(fingerprint).not.to.include(value);
    });

    it('differs between two pools for the same config (a per-process key)', () => {
      expect(newPool().fingerprint(PROJECT, 'srv', config)).not.to.equal(newPool().fingerprint(PROJECT, 'srv', config));
    });
  });

  describe('#acquire()', () => {
    let echo: EchoHttpServer;
    beforeEach(async () => {
      echo = await startEchoHttpServer();
    });
    afterEach(async () => {
      await echo.close();
    });

    it('makes one connect for concurrent acquires of the same spec, and both leases share it', async () => {
      const pool = newPool();
      const shared = spec(pool, 'echo', { type: 'http', url: echo.url });
      const [first, second] = await Promise.all([acquire(pool, shared), acquire(pool, shared)]);
      expect(first.connection).to.equal(second.connection);
      expect(echo.sessions).to.equal(1);
      expect(pool.stats()).to.deep.equal({ open: 1, shared: 1, leased: 1, connects: 1 });
      const result = await first.connection.callTool('echo', { text: 'hi' }, { signal: new AbortController().signal, timeoutMs: 5_000 });
      expect(result.content).to.deep.equal([{ type: 'text', text: 'hi' }]);
    });

    // Two tasks that start together share one connect; cancelling one must not fail the other.
    it('connects for a task even when another task sharing the connect is aborted', async () => {
      const pool = newPool();
      const shared = spec(pool, 'echo', { type: 'http', url: echo.url });
      const cancelled = new AbortController();
      const aborted = pool.acquire(shared, cancelled.signal);
      const kept = pool.acquire(shared, new AbortController().signal);
      cancelled.abort();
      const [abortedResult, keptResult] = await Promise.allSettled([aborted, kept]);
      if (abortedResult.status === 'fulfilled') leases.push(abortedResult.value);
      expect(keptResult.status, keptResult.status === 'rejected' ? String(keptResult.reason) : '').to.equal('fulfilled');
      if (keptResult.status === 'fulfilled') {
        leases.push(keptResult.value);
        expect(keptResult.value.connection.isClosed).to.equal(false);
        expect(pool.stats()).to.include({ open: 1, leased: 1 });
      }
    });

    it('opens separate connections for specs that differ', async () => {
      const pool = newPool();
      const a = await acquire(pool, spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'a' } }));
      const b = await acquire(pool, spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'b' } }));
      expect(a.connection).not.to.equal(b.connection);
      expect(echo.sessions).to.equal(2);
      expect(pool.stats().open).to.equal(2);
    });

    it('reuses an idle connection for a new acquire during the idle period, without a new session', async () => {
      const pool = newPool({ idleTtlMs: 60_000 });
      const shared = spec(pool, 'echo', { type: 'http', url: echo.url });
      const first = await pool.acquire(shared);
      first.release();
      expect(pool.stats()).to.include({ open: 1, leased: 0 });
      const second = await acquire(pool, shared);
      expect(second.connection).to.equal(first.connection);
      expect(echo.sessions).to.equal(1);
      expect(pool.stats()).to.include({ open: 1, leased: 1, connects: 1 });
    });

    describe('maxConnections', () => {
      it('closes the idle connection to make room for a different spec', async () => {
        const pool = newPool({ maxConnections: 1 });
        const first = await pool.acquire(spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'a' } }));
        first.release();
        const second = await acquire(pool, spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'b' } }));
        expect(first.connection.isClosed).to.equal(true);
        expect(second.connection.isClosed).to.equal(false);
        expect(pool.stats()).to.include({ open: 1, leased: 1 });
      });

      it('evicts the longest-idle connection first', async () => {
        const pool = newPool({ maxConnections: 2 });
        const older = await pool.acquire(spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'a' } }));
        const newer = await pool.acquire(spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'b' } }));
        older.release();
        await waitFor(() => Date.now() > older.connection.idleSince, 'the clock to move on');
        newer.release();
        await acquire(pool, spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'c' } }));
        expect(older.connection.isClosed).to.equal(true);
        expect(newer.connection.isClosed).to.equal(false);
      });

      it('throws PoolFullError when every open connection is leased', async () => {
        const pool = newPool({ maxConnections: 1 });
        const held = await acquire(pool, spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'a' } }));
        const err = await rejection(pool.acquire(spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'b' } })));
        expect(err).to.be.instanceOf(PoolFullError);
        expect(held.connection.isClosed).to.equal(false);
        expect(pool.stats()).to.include({ open: 1, leased: 1 });
        expect(echo.sessions).to.equal(1);
      });

      it('still shares an open connection at the cap', async () => {
        const pool = newPool({ maxConnections: 1 });
        const shared = spec(pool, 'echo', { type: 'http', url: echo.url });
        const first = await acquire(pool, shared);
        const second = await acquire(pool, shared);
        expect(second.connection).to.equal(first.connection);
      });
    });
  });

  describe('Lease#release()', () => {
    let echo: EchoHttpServer;
    beforeEach(async () => {
      echo = await startEchoHttpServer();
    });
    afterEach(async () => {
      await echo.close();
    });

    it('closes a shared connection after the idle TTL once every lease is released', async () => {
      const pool = newPool({ idleTtlMs: 50 });
      const shared = spec(pool, 'echo', { type: 'http', url: echo.url });
      const [first, second] = await Promise.all([pool.acquire(shared), pool.acquire(shared)]);
      first.release();
      second.release();
      expect(pool.stats()).to.include({ open: 1, leased: 0 });
      await waitFor(() => pool.stats().open === 0, 'the idle connection to close');
      expect(first.connection.isClosed).to.equal(true);
    });

    it('keeps a connection open while any lease holds it, however long', async () => {
      const pool = newPool({ idleTtlMs: 50 });
      const shared = spec(pool, 'echo', { type: 'http', url: echo.url });
      const [first, second] = await Promise.all([pool.acquire(shared), pool.acquire(shared)]);
      leases.push(second);
      first.release();
      // Another connection's TTL running out is the clock: by then this one's TTL would have too.
      const other = await pool.acquire(spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Clock': '1' } }));
      other.release();
      await waitFor(() => other.connection.isClosed, 'the other connection\'s TTL');
      expect(second.connection.isClosed).to.equal(false);
      expect(pool.stats()).to.include({ open: 1, leased: 1 });
    });

    it('closes at once with idleTtlMs 0', async () => {
      const pool = newPool({ idleTtlMs: 0 });
      const lease = await pool.acquire(spec(pool, 'echo', { type: 'http', url: echo.url }));
      lease.release();
      expect(pool.stats().open).to.equal(0);
      expect(lease.connection.isClosed).to.equal(true);
    });

    it('counts a second release of the same lease once', async () => {
      const pool = newPool({ idleTtlMs: 0 });
      const shared = spec(pool, 'echo', { type: 'http', url: echo.url });
      const first = await pool.acquire(shared);
      const second = await acquire(pool, shared);
      first.release();
      first.release();
      expect(second.connection.isClosed).to.equal(false);
      expect(pool.stats()).to.include({ open: 1, leased: 1 });
    });
  });

  describe('a failed connect', () => {
    let hang: HangHttpServer;
    beforeEach(async () => {
      hang = await startHangHttpServer({ hangConnect: true });
    });
    afterEach(async () => {
      await hang.close();
    });

    it('rejects after the config\'s timeout, leaves no entry, and a later acquire tries again', async () => {
      const pool = newPool();
      const hanging = spec(pool, 'hang', { type: 'http', url: hang.url, timeout: 300 });
      const started = Date.now();
      const err = await rejection(pool.acquire(hanging));
      expect(err).to.be.instanceOf(Error);
      expect(Date.now() - started).to.be.below(2_000);
      expect(pool.stats()).to.include({ open: 0, leased: 0 });
      const held = hang.heldRequests;
      expect(held).to.be.at.least(1);

      await rejection(pool.acquire(hanging));
      expect(hang.heldRequests).to.be.above(held);
      expect(pool.stats()).to.include({ open: 0, leased: 0 });
    });

    it('rejects every concurrent acquirer and leaves no entry', async () => {
      const pool = newPool();
      const hanging = spec(pool, 'hang', { type: 'http', url: hang.url, timeout: 300 });
      const results = await Promise.allSettled([pool.acquire(hanging), pool.acquire(hanging)]);
      expect(results.map((result) => result.status)).to.deep.equal(['rejected', 'rejected']);
      expect(pool.stats()).to.include({ open: 0, leased: 0 });
    });
  });

  describe('#close()', () => {
    let echo: EchoHttpServer;
    beforeEach(async () => {
      echo = await startEchoHttpServer();
    });
    afterEach(async () => {
      await echo.close();
    });

    it('closes every connection, leased or idle, and later acquires reject', async () => {
      const pool = newPool();
      const leased = await acquire(pool, spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'a' } }));
      const idle = await pool.acquire(spec(pool, 'echo', { type: 'http', url: echo.url, headers: { 'X-Tenant': 'b' } }));
      idle.release();
      await pool.close();
      expect(leased.connection.isClosed).to.equal(true);
      expect(idle.connection.isClosed).to.equal(true);
      expect(pool.stats().open).to.equal(0);
      const err = await rejection(pool.acquire(spec(pool, 'echo', { type: 'http', url: echo.url })));
      expect(err).to.be.instanceOf(Error);
      expect((err as Error).message).to.match(/closed/);
    });
  });

  describe('stdio', () => {
    it('closes a released stdio connection and its process at once, whatever the TTL', async () => {
      const pool = newPool({ idleTtlMs: 60_000 });
      const command = echoStdioCommand();
      const stdio = spec(pool, 'echo', { type: 'stdio', command: command.command, args: command.args }, 'task-1');
      const lease = await pool.acquire(stdio);
      const result = await lease.connection.callTool('whoami', {}, { signal: new AbortController().signal, timeoutMs: 10_000 });
      const [block] = result.content as Array<{ type: string; text: string }>;
      const { pid } = JSON.parse(block!.text) as StdioWhoami;
      expect(pid).to.not.equal(process.pid);
      expect(isAlive(pid)).to.equal(true);
      expect(pool.stats()).to.include({ open: 1, shared: 0, leased: 1 });

      lease.release();
      expect(pool.stats().open).to.equal(0);
      expect(lease.connection.isClosed).to.equal(true);
      await waitFor(() => !isAlive(pid), `process ${pid} to exit`);
    });

    it('gives two tasks their own process', async () => {
      const pool = newPool();
      const command = echoStdioCommand();
      const config: McpServerConfig = { type: 'stdio', command: command.command, args: command.args };
      const [one, two] = await Promise.all([acquire(pool, spec(pool, 'echo', config, 'task-1')), acquire(pool, spec(pool, 'echo', config, 'task-2'))]);
      expect(one.connection).not.to.equal(two.connection);
      const pids = await Promise.all([one, two].map(async (lease) => {
        const result = await lease.connection.callTool('whoami', {}, { signal: new AbortController().signal, timeoutMs: 10_000 });
        return (JSON.parse((result.content as Array<{ text: string }>)[0]!.text) as StdioWhoami).pid;
      }));
      expect(pids[0]).not.to.equal(pids[1]);
    });
  });
});
