import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTask, script, startWithServers } from '../support/mcpHarness.js';
import type { TestAirlock } from '../support/harness.js';

/** A stdio MCP server in plain Node.js (no SDK), which answers `greet` with a word from its own node_modules. */
const NODE_SERVER = `
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { greeting } from 'greeting';
const extra = () => (process.env.DATA_FILE ? ' and ' + (existsSync(process.env.DATA_FILE) ? readFileSync(process.env.DATA_FILE, 'utf8').trim() : 'no data file') : '');
const send = (message) => process.stdout.write(JSON.stringify(message) + '\\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  const message = JSON.parse(line);
  if (message.id === undefined) return;
  const reply = (result) => send({ jsonrpc: '2.0', id: message.id, result });
  if (message.method === 'initialize') reply({ protocolVersion: message.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'checkout', version: '1.0.0' } });
  else if (message.method === 'tools/list') reply({ tools: [{ name: 'greet', inputSchema: { type: 'object', properties: {} } }] });
  else if (message.method === 'tools/call') reply({ content: [{ type: 'text', text: greeting + ' from node in ' + process.cwd() + extra() }] });
  else send({ jsonrpc: '2.0', id: message.id, error: { code: -32601, message: 'no such method' } });
});
`;

/** The same in Python, with a module from its virtualenv's site-packages. */
const PYTHON_SERVER = `
import json, os, sys
from greeting_py import GREETING
for line in sys.stdin:
    message = json.loads(line)
    if 'id' not in message:
        continue
    method = message.get('method')
    if method == 'initialize':
        result = {'protocolVersion': message['params']['protocolVersion'], 'capabilities': {'tools': {}}, 'serverInfo': {'name': 'py', 'version': '1.0.0'}}
    elif method == 'tools/list':
        result = {'tools': [{'name': 'greet', 'inputSchema': {'type': 'object', 'properties': {}}}]}
    elif method == 'tools/call':
        result = {'content': [{'type': 'text', 'text': GREETING + ' from python in ' + os.getcwd()}]}
    else:
        sys.stdout.write(json.dumps({'jsonrpc': '2.0', 'id': message['id'], 'error': {'code': -32601, 'message': 'no such method'}}) + '\\n')
        sys.stdout.flush()
        continue
    sys.stdout.write(json.dumps({'jsonrpc': '2.0', 'id': message['id'], 'result': result}) + '\\n')
    sys.stdout.flush()
`;

/** A checkout outside every path the sandbox shows by default: a package with its own node_modules, and a Python project with a virtualenv. */
function makeCheckout(): { dir: string; python?: string } {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-checkout-'));
  chmodSync(dir, 0o755); // a checkout as people have them; mkdtemp makes 0700
  mkdirSync(join(dir, '..', `${dir.split('/').at(-1)}-data`), { mode: 0o755 });
  writeFileSync(join(`${dir}-data`, 'data.txt'), 'the data\n');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'my-server', type: 'module' }));
  mkdirSync(join(dir, 'build'));
  writeFileSync(join(dir, 'build', 'index.js'), NODE_SERVER);
  writeFileSync(join(dir, 'build', 'crash.js'), "import 'a-package-that-is-not-installed';\n");
  mkdirSync(join(dir, 'node_modules', 'greeting'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'greeting', 'package.json'), JSON.stringify({ name: 'greeting', type: 'module', main: 'index.js' }));
  writeFileSync(join(dir, 'node_modules', 'greeting', 'index.js'), "export const greeting = 'hello';\n");
  writeFileSync(join(dir, 'pyproject.toml'), '[project]\nname = "my-py-server"\n');
  writeFileSync(join(dir, 'server.py'), PYTHON_SERVER);
  try {
    execFileSync('python3', ['-m', 'venv', '--without-pip', join(dir, '.venv')], { stdio: 'ignore' });
  } catch {
    return { dir }; // no Python (or no venv module) here: the Python case is skipped
  }
  const lib = join(dir, '.venv', 'lib');
  const version = readdirSync(lib).find((name) => name.startsWith('python'))!;
  writeFileSync(join(lib, version, 'site-packages', 'greeting_py.py'), "GREETING = 'hi'\n");
  return { dir, python: join(dir, '.venv', 'bin', 'python') };
}

function statusMessages(events: Array<{ event: string; data: any }>): string[] {
  return events.filter((e) => e.event === 'status' && e.data.message).map((e) => e.data.message as string);
}

describe('stdio MCP servers from anywhere on the host', function () {
  this.timeout(120_000);
  let checkout: { dir: string; python?: string };
  let airlock: TestAirlock;

  before(async () => {
    checkout = makeCheckout();
    const servers: Record<string, any> = {
      mine: { type: 'stdio', command: 'node', args: [join(checkout.dir, 'build', 'index.js')] },
      reader: {
        type: 'stdio', command: 'node', args: [join(checkout.dir, 'build', 'index.js')],
        env: { DATA_FILE: join(`${checkout.dir}-data`, 'data.txt') }, sandbox: { readOnlyPaths: [`${checkout.dir}-data`] },
      },
      unshown: { type: 'stdio', command: 'node', args: [join(checkout.dir, 'build', 'index.js')], env: { DATA_FILE: join(`${checkout.dir}-data`, 'data.txt') } },
      gone: { type: 'stdio', command: 'node', args: [join(checkout.dir, 'build', 'missing.js')] },
      relative: { type: 'stdio', command: 'node', args: ['build/index.js'] },
      crashy: { type: 'stdio', command: 'node', args: [join(checkout.dir, 'build', 'crash.js')] },
      nowhere: { type: 'stdio', command: 'my-server-that-is-not-installed', args: [] },
    };
    if (checkout.python) servers.py = { type: 'stdio', command: checkout.python, args: [join(checkout.dir, 'server.py')] };
    airlock = await startWithServers(servers, { project: { builtinTools: false } });
  });
  after(async () => {
    await airlock?.stop();
    rmSync(checkout.dir, { recursive: true, force: true });
    rmSync(`${checkout.dir}-data`, { recursive: true, force: true });
  });

  it('runs a Node.js server from a checkout outside every default path, with its own node_modules', async () => {
    const { task } = await runTask(airlock, { message: script(['mine__greet', {}]) });
    expect(task.status, JSON.stringify(task.error)).to.equal('completed');
    expect(task.output.toolCalls[0].output).to.equal('hello from node in /workspace');
  });

  it('shows a server the folders of its sandbox.readOnlyPaths, and only that server', async () => {
    const { task } = await runTask(airlock, { message: script(['reader__greet', {}], ['unshown__greet', {}]) });
    expect(task.output.toolCalls.map((call: { output: string }) => call.output)).to.deep.equal([
      'hello from node in /workspace and the data', 'hello from node in /workspace and no data file',
    ]);
  });

  it('runs a Python server from its virtualenv', async function () {
    if (!checkout.python) this.skip();
    const { task } = await runTask(airlock, { message: script(['py__greet', {}]) });
    expect(task.status, JSON.stringify(task.error)).to.equal('completed');
    expect(task.output.toolCalls[0].output).to.equal('hi from python in /workspace');
  });

  it('says, before starting it, which configured file or command does not exist, and the config key', async () => {
    const { events } = await runTask(airlock, { message: script(['mine__greet', {}]) });
    const messages = statusMessages(events);
    const missing = join(checkout.dir, 'build', 'missing.js');
    expect(messages).to.include(`MCP server "gone" is unavailable for this task: the server was not started: projects.default.mcpServers.gone.args[0] (${missing}) does not exist on this host`);
    expect(messages.find((m) => m.includes('"relative"'))).to.include('args[0] "build/index.js" is a relative path, so the server looks for it in its working directory, /workspace (the task\'s workspace), where it does not exist; give its absolute path');
    expect(messages.find((m) => m.includes('"nowhere"'))).to.include('projects.default.mcpServers.nowhere.command "my-server-that-is-not-installed" is not on Airlock\'s PATH');
  });

  it('reports the first error line of a server that dies while starting, not only its last lines', async () => {
    const { events } = await runTask(airlock, { message: script(['mine__greet', {}]) });
    const crashy = statusMessages(events).find((m) => m.includes('"crashy"'))!;
    expect(crashy).to.match(/the server's first error: Error \[ERR_MODULE_NOT_FOUND\]: Cannot find package 'a-package-that-is-not-installed'/);
    expect(crashy).to.include('its last output:');
  });
});
