import { createHmac, randomBytes } from 'node:crypto';
import type { McpServerConfig } from '../config.js';
import { McpConnection } from './mcpConnection.js';
import type { ConnectionSpec } from './mcpConnection.js';

export interface McpPoolOptions {
  /** Open connections at most, shared and per-task together. */
  maxConnections: number;
  /** A shared connection no task holds is closed after this long. */
  idleTtlMs: number;
}

/** A task's hold on a connection; release it exactly once. */
export interface Lease {
  connection: McpConnection;
  release(): void;
}

/** The pool cannot open another connection. */
export class PoolFullError extends Error {
  constructor(max: number) {
    super(`the MCP connection pool is full (${max} open connections, none idle)`);
    this.name = 'PoolFullError';
  }
}

/** Counts for benchmarks, health and tests. */
export interface PoolStats {
  open: number;
  shared: number;
  leased: number;
  /** Connects made since the pool started (reconnects included). */
  connects: number;
}

/**
 * The MCP client pool. HTTP and SSE connections are shared by every task whose resolved config is
 * identical (same fingerprint) and by no other; stdio servers get one process per task. Concurrent
 * tasks asking for the same connection cause one connect. Unleased shared connections close after
 * the idle TTL; at the cap, the longest-idle one is closed to make room.
 */
export class McpPool {
  private readonly connections = new Map<string, McpConnection>();
  private readonly idleTimers = new Map<McpConnection, NodeJS.Timeout>();
  // Per-process key: fingerprints cannot be brute-forced into the values they were made from.
  private readonly fingerprintKey = randomBytes(32);
  private closedConnects = 0;
  private closed = false;

  constructor(private readonly options: McpPoolOptions) {}

  /** The pool key of a resolved server config: an HMAC, never the values themselves. */
  fingerprint(projectId: string, serverName: string, config: McpServerConfig, taskId?: string): string {
    const mac = createHmac('sha256', this.fingerprintKey);
    mac.update(canonicalJson({ projectId, serverName, config, taskId: taskId ?? null }));
    return mac.digest('hex');
  }

  /** Leases a connected connection for `spec`, opening (or sharing) one as needed. */
  async acquire(spec: ConnectionSpec, signal?: AbortSignal): Promise<Lease> {
    if (this.closed) throw new Error('the MCP pool is closed');
    let connection = this.connections.get(spec.key);
    if (!connection || connection.isClosed) {
      this.makeRoom();
      connection = new McpConnection(spec);
      this.connections.set(spec.key, connection);
    }
    this.hold(connection);
    try {
      await connection.connect(signal);
    } catch (err) {
      this.drop(connection);
      throw err;
    }
    let released = false;
    const held = connection;
    return {
      connection: held,
      release: () => {
        if (released) return;
        released = true;
        this.letGo(held);
      },
    };
  }

  stats(): PoolStats {
    let leased = 0;
    let shared = 0;
    let connects = this.closedConnects;
    for (const connection of this.connections.values()) {
      if (connection.leases > 0) leased++;
      if (connection.spec.config.type !== 'stdio') shared++;
      connects += connection.connects;
    }
    return { open: this.connections.size, shared, leased, connects };
  }

  /** Closes every connection (stdio processes included). */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.idleTimers.values()) clearTimeout(timer);
    this.idleTimers.clear();
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.allSettled(all.map((connection) => connection.close()));
  }

  private hold(connection: McpConnection): void {
    connection.leases++;
    const timer = this.idleTimers.get(connection);
    if (timer) clearTimeout(timer);
    this.idleTimers.delete(connection);
  }

  private letGo(connection: McpConnection): void {
    connection.leases--;
    if (connection.leases > 0) return;
    connection.idleSince = Date.now();
    // A per-task process has no one else to serve.
    if (connection.spec.config.type === 'stdio' || this.options.idleTtlMs === 0) return void this.retire(connection);
    const timer = setTimeout(() => void this.retire(connection), this.options.idleTtlMs);
    timer.unref();
    this.idleTimers.set(connection, timer);
  }

  // A connect that failed: the next task tries afresh.
  private drop(connection: McpConnection): void {
    connection.leases--;
    if (connection.leases === 0) void this.retire(connection);
  }

  private async retire(connection: McpConnection): Promise<void> {
    if (connection.leases > 0) return;
    const timer = this.idleTimers.get(connection);
    if (timer) clearTimeout(timer);
    this.idleTimers.delete(connection);
    if (this.connections.get(connection.spec.key) === connection) this.connections.delete(connection.spec.key);
    this.closedConnects += connection.connects;
    await connection.close();
  }

  private makeRoom(): void {
    if (this.connections.size < this.options.maxConnections) return;
    let oldest: McpConnection | undefined;
    for (const connection of this.connections.values()) {
      if (connection.leases === 0 && (!oldest || connection.idleSince < oldest.idleSince)) oldest = connection;
    }
    if (!oldest) throw new PoolFullError(this.options.maxConnections);
    void this.retire(oldest);
  }
}

/** JSON with object keys sorted, so equal configs give equal fingerprints. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}
