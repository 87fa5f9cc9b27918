import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { echoStdioCommand } from '../../fixtures/mcp/echoServer.js';
import { listenOnLoopback } from '../../fixtures/mcp/fixtureSupport.js';
import type { LoopbackListener } from '../../fixtures/mcp/fixtureSupport.js';
import { ConfigError } from '../../src/config.js';
import { createApiKey } from '../../src/runtime/security/apiKeys.js';
import { rejection, startTestAirlock, waitFor, waitForStatus } from '../support/harness.js';
import type { TestAirlock } from '../support/harness.js';
import { script } from '../support/mcpHarness.js';
import { runAirlockCli } from '../support/process.js';
import { isRunning, sandboxProcesses } from '../support/processTree.js';
import { readSse } from '../support/sse.js';
import type { SseFrame } from '../support/sse.js';

const SECRET = 'sandbox-secret-4e1f9a';
const CANARY = 'airlock-own-env-canary-77c1';
const MEMORY_LIMIT_MB = 128;
const MAX_PROCESSES = 64;

/** A directory with a config file, the data directory inside it, and a file next to them. */
interface World {
  dir: string;
  configPath: string;
  dataDir: string;
  cleanup(): void;
}

/** `config` is the config file's content, or makes it from the directory's path. */
function world(config: Record<string, unknown> | ((dir: string) => Record<string, unknown>)): World {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'airlock-sandbox-')));
  const configPath = join(dir, 'airlock.config.json');
  writeFileSync(configPath, JSON.stringify(typeof config === 'function' ? config(dir) : config));
  writeFileSync(join(dir, 'tool.txt'), 'a tool file shown read-only\n');
  return { dir, configPath, dataDir: join(dir, 'data'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs a task with `key` to its end; the task and every event of its stream. */
async function run(airlock: TestAirlock, body: Record<string, unknown>, key = airlock.key, timeoutMs = 60_000): Promise<{ task: any; events: SseFrame[] }> {
  const res = await airlock.api('/tasks', { method: 'POST', json: body, key });
  if (res.status !== 201) throw new Error(`create failed: ${res.text}`);
  const id = res.body.data.id;
  const task = await waitFor(async () => {
    const { body: got } = await airlock.api(`/tasks/${id}`, { key });
    return ['completed', 'failed'].includes(got?.data?.status) ? got.data : undefined;
  }, `task ${id} to finish`, timeoutMs);
  const stream = await readSse(`${airlock.url}/api/v1/tasks/${id}/stream?after=0`, { authorization: `Bearer ${key}` });
  return { task, events: stream.frames };
}

/** Runs one shell command in a new task (with `fields` such as env and secrets); the task and the command's output. */
async function shell(airlock: TestAirlock, command: string, fields: Record<string, unknown> = {}, key?: string): Promise<{ task: any; output: string }> {
  const { task } = await run(airlock, { message: script(['run_shell_command', { command }]), ...fields }, key);
  expect(task.status, JSON.stringify(task.error)).to.equal('completed');
  return { task, output: task.output.toolCalls[0].output };
}

function firstStatus(events: SseFrame[]): any {
  return events.find((e) => e.event === 'status')?.data;
}

describe('Sandboxed task processes (bubblewrap)', function () {
  this.timeout(120_000);

  let w: World;
  let airlock: TestAirlock;
  let offlineKey: string;
  let listener: LoopbackListener;
  const saved = { canary: process.env.AIRLOCK_SANDBOX_CANARY, anthropic: process.env.ANTHROPIC_API_KEY };

  before(async () => {
    // Airlock's own environment: none of it may reach a sandboxed process.
    process.env.AIRLOCK_SANDBOX_CANARY = CANARY;
    process.env.ANTHROPIC_API_KEY = `sk-ant-${CANARY}`;
    listener = await listenOnLoopback((_req, res) => res.end('hello from the host'));
    const echo = echoStdioCommand();
    // The config file and the data directory lie in a directory every sandbox shows read-only:
    // both must still be hidden.
    w = world((dir) => ({
      sandbox: { memoryLimitMb: MEMORY_LIMIT_MB, maxProcesses: MAX_PROCESSES, readOnlyPaths: [dir] },
      projects: {
        default: { mcpServers: { echo: { type: 'stdio', command: echo.command, args: echo.args, env: { FROM_CONFIG: 'cfg-{{mcp.REGION}}' }, cwd: 'srv' } } },
        offline: { sandbox: { network: 'deny' } },
      },
    }));
    airlock = await startTestAirlock({ dataDir: w.dataDir, env: { AIRLOCK_CONFIG: w.configPath } });
    offlineKey = (await createApiKey(airlock.store, { projectId: 'offline' })).key;
  });

  after(async () => {
    await airlock?.stop();
    await listener?.close();
    w?.cleanup();
    for (const [name, value] of [['AIRLOCK_SANDBOX_CANARY', saved.canary], ['ANTHROPIC_API_KEY', saved.anthropic]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  /** Limits need writable cgroup v1 hierarchies; where there are none, start-up said so and these tests cannot run. */
  function skipWithoutLimits(test: Mocha.Context): void {
    if (airlock.logs.some((line) => line.includes('sandbox limits:'))) test.skip();
  }

  it('logs at start-up that task processes run in bubblewrap', () => {
    expect(airlock.logs.some((line) => line.includes('task processes run in bubblewrap sandboxes'))).to.equal(true);
  });

  it('runs commands in /workspace (cwd and HOME); what they write there shows up in the task\'s workspace', async () => {
    const { task, output } = await shell(airlock, 'pwd; echo "home=$HOME"; mkdir -p deliver && echo made-inside > deliver/out.txt');
    expect(output).to.include('\n/workspace\nhome=/workspace\n');
    expect(readFileSync(join(w.dataDir, 'workspaces', task.id, 'deliver', 'out.txt'), 'utf8')).to.equal('made-inside\n');
  });

  it('cannot read another task\'s workspace, the database, the config file or what only root may read', async () => {
    const a = await shell(airlock, 'echo only-for-task-a > private.txt');
    const aFile = join(w.dataDir, 'workspaces', a.task.id, 'private.txt');
    expect(readFileSync(aFile, 'utf8')).to.equal('only-for-task-a\n');
    const { output } = await shell(airlock, [
      `cat ${aFile}`, `cat ../${a.task.id}/private.txt`, `cat /workspace/../${a.task.id}/private.txt`,
      `ls ${w.dataDir}/workspaces | wc -l`, `cat ${w.dataDir}/airlock.db | wc -c`,
      `echo "config=$(cat ${w.configPath} | wc -c)"`, `cat ${w.dir}/tool.txt`, 'echo "shadow=$(cat /etc/shadow 2>/dev/null | wc -c)"',
    ].join('; '));
    expect(output).to.not.include('only-for-task-a');
    expect(output).to.include(`cat: ${aFile}: No such file or directory`);
    expect(output).to.include(`cat: ../${a.task.id}/private.txt: No such file or directory`);
    expect(output).to.include(`cat: ${w.dataDir}/airlock.db: No such file or directory`);
    // The data directory is an empty tmpfs, the config file an empty file, the directory around them readable.
    expect(output).to.match(/Stdout:\n0\n0\nconfig=0\na tool file shown read-only\nshadow=0\n/);
  });

  it('cannot write outside /workspace: system, Airlock\'s code and data, shown paths; /tmp is its own', async () => {
    const marker = `sbx-${Date.now()}`;
    const { output } = await shell(airlock, [
      `touch /etc/${marker}`, `touch /usr/${marker}`, `touch ${w.dataDir}/${marker}`, `touch ${w.dir}/${marker}`,
      `touch ${join(process.cwd(), marker)}`, `mkdir /${marker}`, `echo private > /tmp/${marker} && cat /tmp/${marker}`,
    ].map((command) => `${command} 2>&1 || echo refused`).join('; '));
    expect(output.match(/refused/g)).to.have.length(6);
    expect(output).to.include('Read-only file system');
    expect(output).to.include('\nprivate\n');
    for (const path of [`/etc/${marker}`, `/usr/${marker}`, join(w.dataDir, marker), join(w.dir, marker), join(process.cwd(), marker), `/${marker}`, join(tmpdir(), marker)]) {
      expect(existsSync(path), path).to.equal(false);
    }
  });

  it('sees the task\'s env and secrets, and nothing of Airlock\'s own environment, not even through /proc', async () => {
    const { output, task } = await shell(airlock, [
      'printenv MY_SECRET | sha256sum', 'echo "region=$REGION"', 'env | cut -d= -f1 | sort | tr "\\n" " "; echo',
      `cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c ${CANARY}`, `cat /proc/${process.pid}/environ 2>&1 | wc -c`,
    ].join('; '), { env: { REGION: 'eu-west-1' }, secrets: { MY_SECRET: SECRET } });
    const digest = createHash('sha256').update(`${SECRET}\n`).digest('hex');
    expect(output).to.include(`${digest}  -`);
    expect(output).to.include('region=eu-west-1');
    const names = /region=eu-west-1\n(.*)\n/.exec(output)![1]!.trim().split(' ');
    expect(names).to.include.members(['HOME', 'PATH', 'REGION', 'MY_SECRET']);
    for (const name of names) expect(name, `${name} leaked into the sandbox`).not.to.match(/^(AIRLOCK_|ANTHROPIC_|npm_|MOCHA)/);
    expect(output).to.match(/\n0\n/);
    expect(JSON.stringify(task)).not.to.include(SECRET);
  });

  it('stops a command at its time limit with everything it started', async () => {
    const res = await airlock.api('/tasks', { method: 'POST', json: { message: script(['run_shell_command', { command: 'sleep 301.25 & sleep 302.25; echo never', timeoutMs: 2_000 }]) } });
    const id = res.body.data.id;
    const sleepers = await waitFor(() => {
      const found = sandboxProcesses(w.dataDir).filter((p) => /^sleep 30[12]\.25$/.test(p.args));
      return found.length === 2 ? found : undefined;
    }, 'both sleeps to run in the sandbox', 30_000);
    const task = await waitForStatus(airlock, id, ['completed'], 30_000);
    expect(task.output.toolCalls[0].output).to.match(/^Timed out after 2000 ms/);
    await waitFor(() => sleepers.every((p) => !isRunning(p.pid)), 'the sleeps to be gone', 5_000);
  });

  it('kills a command that takes more than the memory limit, and the server goes on', async function () {
    skipWithoutLimits(this);
    const { task } = await run(airlock, {
      message: script(['run_shell_command', { command: `head -c ${MEMORY_LIMIT_MB * 4}m /dev/zero | tail; echo "status=\${PIPESTATUS[1]}"` }], ['run_shell_command', { command: 'echo still-here' }]),
    });
    const [hog, after] = task.output.toolCalls;
    expect(hog.output).to.include('status=137').and.include('Killed');
    expect(after.output).to.include('still-here');
  });

  it('refuses more processes than the process limit', async function () {
    skipWithoutLimits(this);
    const { task } = await run(airlock, { message: script(['run_shell_command', { command: `for i in $(seq 1 ${MAX_PROCESSES * 2}); do sleep 30 & done; echo all-started`, timeoutMs: 4_000 }], ['run_shell_command', { command: 'echo still-here' }]) });
    const [bomb, after] = task.output.toolCalls;
    expect(bomb.output).to.include('Resource temporarily unavailable').and.not.include('all-started');
    expect(after.output).to.include('still-here');
  });

  it('reaches a loopback server of the host when the network is allowed, and not when the project denies it', async () => {
    // Plain bash (/dev/tcp): no curl needed, and nothing that weighs on the memory limit.
    const get = `exec 3<>/dev/tcp/127.0.0.1/${listener.port} && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3 | tail -1`;
    const allowed = await shell(airlock, get);
    expect(allowed.output).to.include('hello from the host');
    const denied = await shell(airlock, get, {}, offlineKey);
    expect(denied.output).to.include('Connection refused').and.not.include('hello from the host');
  });

  it('runs a stdio MCP server inside the sandbox: cwd and HOME under /workspace, the task\'s env, its own pid namespace', async () => {
    const { task } = await run(airlock, { message: script(['echo__whoami', {}]), env: { REGION: 'eu' }, secrets: { API_TOKEN: SECRET } });
    expect(task.status, JSON.stringify(task.error)).to.equal('completed');
    const seen = JSON.parse(task.output.toolCalls[0].output);
    expect(seen.cwd).to.equal('/workspace/srv');
    expect(seen.env).to.include({ HOME: '/workspace', REGION: 'eu', FROM_CONFIG: 'cfg-eu', API_TOKEN: '[secret:API_TOKEN]' });
    for (const name of Object.keys(seen.env)) expect(name, `${name} leaked into the server`).not.to.match(/^(AIRLOCK_|ANTHROPIC_|npm_|MOCHA)/);
    // The outer bubblewrap is pid 1 of the namespace, the inner one pid 2, the server the next process.
    expect(seen.pid).to.equal(3);
    expect(existsSync(join(w.dataDir, 'workspaces', task.id, 'srv'))).to.equal(true);
  });

  it('leaves no sandboxed process behind when the service stops in the middle of a command', async () => {
    const own = world({ server: { shutdownGraceMs: 200 } });
    const other = await startTestAirlock({ dataDir: own.dataDir, env: { AIRLOCK_CONFIG: own.configPath } });
    let stopped = false;
    try {
      const res = await other.api('/tasks', { method: 'POST', json: { message: script(['run_shell_command', { command: 'sleep 303.25' }]) } });
      expect(res.status).to.equal(201);
      const running = await waitFor(() => {
        const found = sandboxProcesses(own.dataDir);
        return found.some((p) => p.args.includes('sleep 303.25')) ? found : undefined;
      }, 'the command to run', 30_000);
      expect(running.some((p) => p.args.includes('workspace/server.ts'))).to.equal(true);
      await other.stop();
      stopped = true;
      await waitFor(() => running.every((p) => !isRunning(p.pid)), 'every sandboxed process to be gone', 10_000);
    } finally {
      if (!stopped) await other.stop();
      own.cleanup();
    }
  });
});

describe('sandbox.mode', function () {
  this.timeout(60_000);

  it('none: processes run as before, on the host in the workspace directory, with an info line and no warning', async () => {
    const w = world({ sandbox: { mode: 'none' } });
    const airlock = await startTestAirlock({ dataDir: w.dataDir, env: { AIRLOCK_CONFIG: w.configPath, AIRLOCK_SANDBOX_MODE: '' } });
    try {
      const { task, events } = await run(airlock, { message: script(['run_shell_command', { command: `pwd; echo "home=$HOME"; ls ${w.dataDir}` }]) });
      const output = task.output.toolCalls[0].output;
      const workspace = join(w.dataDir, 'workspaces', task.id);
      expect(output).to.include(`\n${workspace}\nhome=${workspace}\n`).and.include('airlock.db');
      expect(firstStatus(events)).to.deep.equal({ status: 'running' });
      expect(airlock.logs.some((line) => line.includes('"level":30') && line.includes('sandbox.mode is \\"none\\"'))).to.equal(true);
      expect(airlock.logs.some((line) => /NOT SANDBOXED|sandbox limits/.test(line))).to.equal(false);
    } finally {
      await airlock.stop();
      w.cleanup();
    }
  });

  it('bwrap: start-up fails, naming the problem, when bubblewrap does not work', async () => {
    const w = world({ sandbox: { mode: 'bwrap', bwrapPath: '/nonexistent/bwrap' } });
    try {
      const error = await rejection(startTestAirlock({ dataDir: w.dataDir, env: { AIRLOCK_CONFIG: w.configPath, AIRLOCK_SANDBOX_MODE: '' } }));
      expect(error).to.be.instanceOf(ConfigError);
      expect((error as Error).message).to.include('sandbox.mode is "bwrap", but bubblewrap (/nonexistent/bwrap) does not work here: /nonexistent/bwrap is not an executable file');
      // The same from the command line: exit code 78 and the message, before anything listens.
      const cli = await runAirlockCli(['serve'], { AIRLOCK_CONFIG: w.configPath, AIRLOCK_DATA_DIR: w.dataDir, PORT: '0', AIRLOCK_BOOTSTRAP_API_KEY: `airlock_${'cd'.repeat(32)}` });
      expect(cli.code).to.equal(78);
      expect(cli.stderr).to.include('sandbox.mode is "bwrap", but bubblewrap (/nonexistent/bwrap) does not work here');
      expect(cli.stdout).to.not.include('Airlock is listening');
    } finally {
      w.cleanup();
    }
  });

  it('bwrap: a bubblewrap that runs but fails the probe stops start-up with its own words', async () => {
    const w = world((dir) => ({ sandbox: { bwrapPath: join(dir, 'bwrap') } }));
    writeFileSync(join(w.dir, 'bwrap'), '#!/bin/sh\necho "bwrap: Creating new namespace failed: Operation not permitted" >&2\nexit 1\n', { mode: 0o755 });
    try {
      const error = await rejection(startTestAirlock({ dataDir: w.dataDir, env: { AIRLOCK_CONFIG: w.configPath, AIRLOCK_SANDBOX_MODE: 'bwrap' } }));
      expect(error).to.be.instanceOf(ConfigError);
      expect((error as Error).message).to.include('Creating new namespace failed: Operation not permitted');
    } finally {
      w.cleanup();
    }
  });

  it('auto: falls back to no sandbox with a loud start-up warning and a warning on each run\'s first status event', async () => {
    const w = world({ sandbox: { bwrapPath: '/nonexistent/bwrap' }, projects: { quiet: { builtinTools: false } } });
    const airlock = await startTestAirlock({ dataDir: w.dataDir, env: { AIRLOCK_CONFIG: w.configPath, AIRLOCK_SANDBOX_MODE: 'auto' } });
    try {
      expect(airlock.logs.some((line) => /"level":40/.test(line) && line.includes('TASK PROCESSES ARE NOT SANDBOXED'))).to.equal(true);
      const { task, events } = await run(airlock, { message: script(['run_shell_command', { command: 'pwd' }]) });
      expect(task.output.toolCalls[0].output).to.include(join(w.dataDir, 'workspaces', task.id));
      expect(firstStatus(events).status).to.equal('running');
      expect(firstStatus(events).message).to.include('not sandboxed').and.include('/nonexistent/bwrap');
      // A project whose tasks start no process has nothing to be warned about.
      const quietKey = (await createApiKey(airlock.store, { projectId: 'quiet' })).key;
      const quiet = await run(airlock, { message: '/reply hi' }, quietKey);
      expect(firstStatus(quiet.events)).to.deep.equal({ status: 'running' });
    } finally {
      await airlock.stop();
      w.cleanup();
    }
  });

  it('says at start-up and on each run\'s first status event when a limit cannot be applied, and applies the others', async function () {
    // The kernel refuses a pids.max above its own maximum (4194304): a limit the host cannot apply.
    const w = world({ sandbox: { maxProcesses: 10_000_000, memoryLimitMb: MEMORY_LIMIT_MB } });
    const airlock = await startTestAirlock({ dataDir: w.dataDir, env: { AIRLOCK_CONFIG: w.configPath } });
    try {
      const warning = airlock.logs.find((line) => line.includes('sandbox limits:'));
      expect(warning, 'the start-up warning').to.be.a('string');
      // A host without cgroup v1 cannot apply the memory limit either; nothing to see here then.
      if (warning!.includes('memory limit')) this.skip();
      expect(warning).to.include('the process limit (10000000) could not be applied');
      const { task, events } = await run(airlock, { message: script(['run_shell_command', { command: `pwd; head -c ${MEMORY_LIMIT_MB * 4}m /dev/zero | tail; echo "status=\${PIPESTATUS[1]}"` }]) });
      expect(firstStatus(events).message).to.match(/^Sandbox limits: the process limit \(10000000\) could not be applied: .+\. Time and output limits still apply\.$/);
      // Sandboxed still, and the memory limit, which could be applied, holds.
      expect(task.output.toolCalls[0].output).to.include('\n/workspace\n').and.include('status=137');
    } finally {
      await airlock.stop();
      w.cleanup();
    }
  });

  it('auto: uses bubblewrap when the probe works, without a warning', async () => {
    const w = world({});
    const airlock = await startTestAirlock({ dataDir: w.dataDir, env: { AIRLOCK_CONFIG: w.configPath, AIRLOCK_SANDBOX_MODE: 'auto' } });
    try {
      const { task, events } = await run(airlock, { message: script(['run_shell_command', { command: 'pwd' }]) });
      expect(task.output.toolCalls[0].output).to.include('\n/workspace\n');
      expect(firstStatus(events)).to.deep.equal({ status: 'running' });
    } finally {
      await airlock.stop();
      w.cleanup();
    }
  });
});
