import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { McpServerConfig } from '../../src/config.js';
import { startTestAirlock, waitForStatus } from './harness.js';
import type { TestAirlock } from './harness.js';
import { readSse } from './sse.js';
import type { SseFrame } from './sse.js';

/** An Airlock whose default project has the given MCP servers (and any other project settings). */
export async function startWithServers(mcpServers: Record<string, McpServerConfig>, extra: { project?: Record<string, unknown>; config?: Record<string, unknown>; env?: Record<string, string> } = {}): Promise<TestAirlock & { configDir: string }> {
  const configDir = await mkdtemp(join(tmpdir(), 'airlock-mcp-config-'));
  const configPath = join(configDir, 'airlock.config.json');
  await writeFile(configPath, JSON.stringify({ ...extra.config, projects: { default: { mcpServers, ...extra.project } } }));
  const airlock = await startTestAirlock({ env: { AIRLOCK_CONFIG: configPath, ...extra.env } });
  const stop = airlock.stop.bind(airlock);
  return Object.assign(airlock, {
    configDir,
    async stop() {
      await stop();
      await rm(configDir, { recursive: true, force: true });
    },
  });
}

/** Runs a scripted task to its end; returns the task and every event of its stream. */
export async function runTask(airlock: TestAirlock, body: Record<string, unknown>, statuses = ['completed', 'failed'], timeoutMs = 30_000): Promise<{ task: any; events: SseFrame[] }> {
  const res = await airlock.api('/tasks', { method: 'POST', json: body });
  if (res.status !== 201) throw new Error(`create failed: ${res.text}`);
  const task = await waitForStatus(airlock, res.body.data.id, statuses, timeoutMs);
  const stream = await readSse(`${airlock.url}/api/v1/tasks/${task.id}/stream?after=0`, { authorization: `Bearer ${airlock.key}` });
  return { task, events: stream.frames };
}

/** A task message that calls tools in order with the scripted model. */
export function script(...calls: [string, Record<string, unknown>][]): string {
  return calls.map(([name, args]) => `/call ${name} ${JSON.stringify(args)}`).join('\n');
}

/** The text outputs of a task's tool calls, in order. */
export function outputs(task: any): string[] {
  return (task.output?.toolCalls ?? []).map((call: { output: string }) => call.output);
}
