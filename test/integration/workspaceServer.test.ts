import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

import { waitFor } from '../support/harness.js';

const SERVER = fileURLToPath(new URL('../../mcp-servers/workspace/server.ts', import.meta.url));
// Resolved here: `--import tsx` would be resolved against the child's cwd, the temp workspace.
const TSX = import.meta.resolve('tsx');
const SECRET = 'secret-value-5b7e';

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false };
const EXPECTED_ANNOTATIONS: Record<string, Record<string, boolean>> = {
  read_file: READ_ONLY,
  list_directory: READ_ONLY,
  glob: READ_ONLY,
  search_file_content: READ_ONLY,
  write_file: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  replace: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  run_shell_command: { readOnlyHint: false, destructiveHint: true, openWorldHint: true },
};

interface ToolResult {
  content: Array<{ type: string; text?: string }>;
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/** Whether a process exists and is not a zombie waiting to be reaped. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('Workspace MCP server (stdio)', function () {
  this.timeout(30_000);

  let workspace: string;
  let outside: string;
  let client: Client;
  let transport: StdioClientTransport;
  let serverPid: number;
  const pidsToStop: number[] = [];

  beforeEach(async () => {
    workspace = await realpath(await mkdtemp(join(tmpdir(), 'airlock-ws-')));
    outside = await realpath(await mkdtemp(join(tmpdir(), 'airlock-outside-')));
    await writeFile(join(outside, 'secret.txt'), 'outside secret\n');
    await mkdir(join(workspace, 'src', 'lib'), { recursive: true });
    await mkdir(join(workspace, 'node_modules', 'dep'), { recursive: true });
    await writeFile(join(workspace, 'README.md'), '# Title\nhello world\nlast line\n');
    await writeFile(join(workspace, 'src', 'main.ts'), 'export function main() {\n  return helper();\n}\n');
    await writeFile(join(workspace, 'src', 'lib', 'helper.ts'), 'export function helper() {\n  return 42;\n}\n');
    await writeFile(join(workspace, 'src', 'style.css'), 'body { color: red; }\n');
    await writeFile(join(workspace, 'node_modules', 'dep', 'index.ts'), 'export function dep() {}\n');

    transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--import', TSX, SERVER, workspace],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: workspace, SECRET },
      cwd: workspace,
      stderr: 'pipe',
    });
    client = new Client({ name: 'workspace-server-test', version: '1.0.0' });
    await client.connect(transport);
    serverPid = transport.pid!;
    pidsToStop.push(serverPid);
  });

  afterEach(async () => {
    await client.close().catch(() => undefined);
    for (const pid of pidsToStop.splice(0)) {
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
    await rm(workspace, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  async function call(name: string, args: Record<string, unknown>): Promise<ToolResult> {
    return (await client.callTool({ name, arguments: args })) as ToolResult;
  }

  function textOf(result: ToolResult): string {
    return result.content.map((block) => block.text ?? '').join('\n');
  }

  /** Expects a refusal naming the path, and returns its text. */
  async function expectRefused(name: string, args: Record<string, unknown>, pathShown: string): Promise<string> {
    const result = await call(name, args);
    expect(result.isError, textOf(result)).to.equal(true);
    expect(textOf(result)).to.include(pathShown).and.to.include('refused');
    return textOf(result);
  }

  describe('tools/list', () => {
    it('lists exactly the seven tools with titles, input schemas and honest annotations', async () => {
      const { tools } = await client.listTools();
      expect(tools.map((tool) => tool.name).sort()).to.deep.equal(Object.keys(EXPECTED_ANNOTATIONS).sort());
      for (const tool of tools) {
        expect(tool.title, tool.name).to.be.a('string').and.not.equal('');
        expect(tool.description, tool.name).to.be.a('string').and.not.equal('');
        expect(tool.inputSchema.type, tool.name).to.equal('object');
        expect(tool.annotations, tool.name).to.include(EXPECTED_ANNOTATIONS[tool.name]);
        expect(tool.annotations?.title, tool.name).to.be.a('string');
      }
      const byName = Object.fromEntries(tools.map((tool) => [tool.name, tool]));
      expect(byName.read_file!.inputSchema.required).to.deep.equal(['path']);
      expect(Object.keys(byName.read_file!.inputSchema.properties ?? {})).to.have.members(['path', 'offset', 'limit']);
      expect(byName.replace!.inputSchema.required).to.have.members(['path', 'old_string', 'new_string']);
      expect(byName.run_shell_command!.inputSchema.required).to.deep.equal(['command']);
      expect(byName.run_shell_command!.outputSchema?.type).to.equal('object');
    });
  });

  describe('file tools', () => {
    it('read_file returns a whole file, and a window with a note when it is paged', async () => {
      expect(textOf(await call('read_file', { path: 'README.md' }))).to.equal('# Title\nhello world\nlast line');
      const window = textOf(await call('read_file', { path: 'README.md', offset: 1, limit: 1 }));
      expect(window).to.equal('[read_file: showing lines 2-2 of 3 in README.md. To read more, call read_file with offset=2.]\nhello world');
    });

    it('read_file cuts a large file at the byte cap and says so', async () => {
      await writeFile(join(workspace, 'big.txt'), `${'x'.repeat(1000)}\n`.repeat(1000));
      const text = textOf(await call('read_file', { path: 'big.txt' }));
      expect(text).to.match(/^\[read_file: showing lines 1-\d+ of 1000 in big\.txt; output is capped at 256 KiB\. To read more, call read_file with offset=\d+\.\]/);
      expect(text.length).to.be.below(256 * 1024 + 300);
    });

    it('read_file describes a binary file instead of returning it', async () => {
      await writeFile(join(workspace, 'logo.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 1, 2, 3]));
      const result = await call('read_file', { path: 'logo.png' });
      expect(result.isError).to.not.equal(true);
      expect(textOf(result)).to.include('binary file').and.include('10 bytes').and.include('image/png');
    });

    it('read_file reports a missing file as a tool error without host paths', async () => {
      const result = await call('read_file', { path: 'nope.txt' });
      expect(result.isError).to.equal(true);
      expect(textOf(result)).to.equal('nope.txt: no such file or directory.');
    });

    it('write_file creates parent directories and overwrites', async () => {
      const created = await call('write_file', { path: 'out/deep/result.txt', content: 'first' });
      expect(textOf(created)).to.equal('Created out/deep/result.txt (5 bytes).');
      const overwritten = await call('write_file', { path: 'out/deep/result.txt', content: 'second' });
      expect(textOf(overwritten)).to.equal('Overwrote out/deep/result.txt (6 bytes).');
      expect(await readFile(join(workspace, 'out', 'deep', 'result.txt'), 'utf8')).to.equal('second');
    });

    it('list_directory lists directories first with types, sizes and symlink targets', async () => {
      await symlink('README.md', join(workspace, 'readme-link'));
      const text = textOf(await call('list_directory', {}));
      expect(text.split('\n')).to.deep.equal([
        'Directory . (4 entries):',
        '[dir]     node_modules/',
        '[dir]     src/',
        '[file]    README.md (30 bytes)',
        '[symlink] readme-link -> README.md',
      ]);
      expect(textOf(await call('list_directory', { path: 'src' }))).to.include('[dir]     lib/').and.include('[file]    main.ts');
    });

    it('replace edits the expected number of occurrences', async () => {
      const result = await call('replace', { path: 'src/lib/helper.ts', old_string: 'return 42;', new_string: 'return 43; // $& kept literally' });
      expect(textOf(result)).to.equal('Replaced 1 occurrence in src/lib/helper.ts.');
      expect(await readFile(join(workspace, 'src', 'lib', 'helper.ts'), 'utf8')).to.include('return 43; // $& kept literally');
      const all = await call('replace', { path: 'src/main.ts', old_string: 'e', new_string: 'E', expected_replacements: 4 });
      expect(all.isError, textOf(all)).to.not.equal(true);
    });

    it('replace leaves the file unchanged when the count differs, saying how many it found', async () => {
      const before = await readFile(join(workspace, 'src', 'main.ts'), 'utf8');
      const tooMany = await call('replace', { path: 'src/main.ts', old_string: 'e', new_string: 'E' });
      expect(tooMany.isError).to.equal(true);
      expect(textOf(tooMany)).to.include('Expected 1 occurrence of old_string in src/main.ts but found 4; the file was not changed.');
      const none = await call('replace', { path: 'src/main.ts', old_string: 'absent', new_string: 'x', expected_replacements: 2 });
      expect(none.isError).to.equal(true);
      expect(textOf(none)).to.include('found 0');
      expect(await readFile(join(workspace, 'src', 'main.ts'), 'utf8')).to.equal(before);
    });
  });

  describe('search tools', () => {
    it('glob matches **, {a,b} and ?, skipping node_modules unless named', async () => {
      expect(textOf(await call('glob', { pattern: '**/*.ts' })).split('\n')).to.deep.equal([
        'Found 2 files matching "**/*.ts" in .:',
        'src/lib/helper.ts',
        'src/main.ts',
      ]);
      expect(textOf(await call('glob', { pattern: '*.{css,ts}', path: 'src' }))).to.include('src/main.ts').and.include('src/style.css');
      expect(textOf(await call('glob', { pattern: 'src/ma??.ts' }))).to.include('src/main.ts');
      expect(textOf(await call('glob', { pattern: 'node_modules/**/*.ts' }))).to.include('node_modules/dep/index.ts');
      expect(textOf(await call('glob', { pattern: '**/*.py' }))).to.equal('No files match "**/*.py" in ..');
    });

    it('search_file_content returns file:line: text lines, filtered by include', async () => {
      const text = textOf(await call('search_file_content', { pattern: 'function \\w+\\(', include: '*.ts' }));
      expect(text.split('\n')).to.deep.equal([
        'Found 2 matches for /function \\w+\\(/ in . (files matching "*.ts"):',
        'src/lib/helper.ts:1: export function helper() {',
        'src/main.ts:1: export function main() {',
      ]);
      expect(textOf(await call('search_file_content', { pattern: 'color', path: 'src' }))).to.include('src/style.css:1: body { color: red; }');
      expect(textOf(await call('search_file_content', { pattern: 'nothing-here' }))).to.match(/^No matches/);
    });

    it('search_file_content reports an invalid regular expression as a tool error', async () => {
      const result = await call('search_file_content', { pattern: '(unclosed' });
      expect(result.isError).to.equal(true);
      expect(textOf(result)).to.include('Invalid regular expression');
    });
  });

  describe('path confinement', () => {
    it('refuses .. escapes and absolute paths outside the workspace', async () => {
      await expectRefused('read_file', { path: `../${outside.split('/').pop()}/secret.txt` }, 'secret.txt');
      await expectRefused('read_file', { path: '/etc/passwd' }, '/etc/passwd');
      await expectRefused('list_directory', { path: '..' }, '..');
      await expectRefused('write_file', { path: `${outside}/written.txt`, content: 'x' }, 'written.txt');
      await expectRefused('write_file', { path: '../escaped.txt', content: 'x' }, 'escaped.txt');
      await expectRefused('replace', { path: '/etc/hostname', old_string: 'a', new_string: 'b' }, '/etc/hostname');
      await expectRefused('glob', { pattern: '*', path: '/etc' }, '/etc');
      await expectRefused('search_file_content', { pattern: 'root', path: '/etc/passwd' }, '/etc/passwd');
      await expectRefused('run_shell_command', { command: 'pwd', cwd: '..' }, '..');
      expect(existsSync(join(outside, 'written.txt'))).to.equal(false);
      expect(existsSync(join(workspace, '..', 'escaped.txt'))).to.equal(false);
    });

    it('refuses symlinks that lead outside, for reads and writes alike', async () => {
      await symlink(outside, join(workspace, 'out-link'));
      await symlink(join(outside, 'secret.txt'), join(workspace, 'secret-link'));
      await symlink(join(outside, 'not-yet.txt'), join(workspace, 'dangling-link'));
      const text = await expectRefused('read_file', { path: 'out-link/secret.txt' }, 'out-link/secret.txt');
      expect(text).to.include('symlink').and.not.include('outside secret');
      await expectRefused('read_file', { path: 'secret-link' }, 'secret-link');
      await expectRefused('list_directory', { path: 'out-link' }, 'out-link');
      await expectRefused('write_file', { path: 'out-link/new/file.txt', content: 'x' }, 'out-link/new/file.txt');
      await expectRefused('write_file', { path: 'dangling-link', content: 'x' }, 'dangling-link');
      await expectRefused('replace', { path: 'secret-link', old_string: 'outside', new_string: 'inside' }, 'secret-link');
      await expectRefused('run_shell_command', { command: 'pwd', cwd: 'out-link' }, 'out-link');
      // Walks neither descend into nor read through the links.
      expect(textOf(await call('search_file_content', { pattern: 'outside secret' }))).to.match(/^No matches/);
      expect(textOf(await call('glob', { pattern: '**/secret.txt' }))).to.match(/^No files match/);
      expect(existsSync(join(outside, 'new'))).to.equal(false);
      expect(existsSync(join(outside, 'not-yet.txt'))).to.equal(false);
      expect(await readFile(join(outside, 'secret.txt'), 'utf8')).to.equal('outside secret\n');
    });

    it('accepts /workspace/... and the absolute root as names for the workspace', async () => {
      expect(textOf(await call('write_file', { path: '/workspace/notes/a.txt', content: 'via alias' }))).to.equal('Created notes/a.txt (9 bytes).');
      expect(await readFile(join(workspace, 'notes', 'a.txt'), 'utf8')).to.equal('via alias');
      expect(textOf(await call('read_file', { path: `${workspace}/notes/a.txt` }))).to.equal('via alias');
      expect(textOf(await call('list_directory', { path: '/workspace' }))).to.include('[dir]     notes/');
      expect(textOf(await call('glob', { pattern: '/workspace/notes/*.txt' }))).to.include('notes/a.txt');
    });
  });

  describe('run_shell_command', () => {
    it('runs in the workspace with the task env, secrets included', async () => {
      const result = await call('run_shell_command', { command: 'echo "$SECRET"; pwd' });
      expect(result.isError, textOf(result)).to.not.equal(true);
      expect(result.structuredContent).to.include({ exitCode: 0, timedOut: false, stdout: `${SECRET}\n${workspace}\n`, stderr: '' });
      expect(textOf(result)).to.equal(`Exit code: 0\nStdout:\n${SECRET}\n${workspace}\nStderr: (empty)`);
      const sub = await call('run_shell_command', { command: 'pwd', cwd: 'src/lib' });
      expect(sub.structuredContent?.stdout).to.equal(`${join(workspace, 'src', 'lib')}\n`);
    });

    it('reports a non-zero exit as an error with stderr', async () => {
      const result = await call('run_shell_command', { command: 'echo partial; echo broken >&2; exit 3' });
      expect(result.isError).to.equal(true);
      expect(result.structuredContent).to.include({ exitCode: 3, stdout: 'partial\n', stderr: 'broken\n', timedOut: false });
      expect(textOf(result)).to.include('Exit code: 3').and.include('Stderr:\nbroken');
    });

    it('kills the whole process group on timeout, leaving no orphans', async () => {
      const started = Date.now();
      const result = await call('run_shell_command', { command: 'sleep 30 & echo $! > sleep.pid; sleep 31', timeoutMs: 500 });
      expect(Date.now() - started).to.be.below(3_000);
      expect(result.isError).to.equal(true);
      expect(result.structuredContent).to.include({ timedOut: true, exitCode: null });
      expect(textOf(result)).to.include('Timed out after 500 ms');
      const sleepPid = Number(await readFile(join(workspace, 'sleep.pid'), 'utf8'));
      await waitFor(() => !isAlive(sleepPid), `background sleep ${sleepPid} to die`, 2_000);
    });

    it('does not let background jobs outlive the command', async () => {
      const result = await call('run_shell_command', { command: 'sleep 30 & echo $! > bg.pid; echo started' });
      expect(result.structuredContent).to.include({ exitCode: 0, stdout: 'started\n' });
      const bgPid = Number(await readFile(join(workspace, 'bg.pid'), 'utf8'));
      await waitFor(() => !isAlive(bgPid), `background sleep ${bgPid} to die`, 2_000);
    });

    it('caps each output stream, keeping its beginning and end', async () => {
      const result = await call('run_shell_command', { command: "printf start; head -c 3000000 /dev/zero | tr '\\0' a; printf end" });
      expect(result.isError, textOf(result).slice(0, 200)).to.not.equal(true);
      const stdout = String(result.structuredContent?.stdout);
      expect(result.structuredContent?.stdoutTruncated).to.equal(true);
      expect(stdout.length).to.be.below(1024 * 1024 + 200);
      expect(stdout.startsWith('start')).to.equal(true);
      expect(stdout.endsWith('end')).to.equal(true);
      expect(stdout).to.include('output truncated');
    });
  });

  describe('robustness', () => {
    it('answers bad arguments with tool errors and keeps serving', async () => {
      const wrongType = await call('read_file', { path: 42 });
      expect(wrongType.isError).to.equal(true);
      const missing = await call('replace', { path: 'README.md' });
      expect(missing.isError).to.equal(true);
      const tooLong = await call('run_shell_command', { command: 'true', timeoutMs: 600_001 });
      expect(tooLong.isError).to.equal(true);
      await call('read_file', { path: 'src' }).then((result) => expect(textOf(result)).to.include('is a directory'));
      expect(textOf(await call('read_file', { path: 'README.md', limit: 1 }))).to.include('# Title');
      expect(isAlive(serverPid)).to.equal(true);
    });

    it('kills a running command when the call is cancelled', async () => {
      const controller = new AbortController();
      const running = client.callTool({ name: 'run_shell_command', arguments: { command: 'sleep 30 & echo $! > sleep.pid; wait' } }, { signal: controller.signal });
      running.catch(() => undefined);
      const pidFile = join(workspace, 'sleep.pid');
      await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 'the command to start', 10_000);
      controller.abort();
      const sleepPid = Number(await readFile(pidFile, 'utf8'));
      await waitFor(() => !isAlive(sleepPid), `sleep ${sleepPid} to be killed`, 3_000);
      expect(textOf(await call('run_shell_command', { command: 'echo still serving' }))).to.include('still serving');
    });

    it('serves a client pinned to the 2026-07-28 revision too', async () => {
      const modernTransport = new StdioClientTransport({
        command: process.execPath,
        args: ['--import', TSX, SERVER],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SECRET },
        cwd: workspace,
        stderr: 'pipe',
      });
      const modern = new Client({ name: 'workspace-server-test', version: '1.0.0' }, { versionNegotiation: { mode: { pin: '2026-07-28' } } });
      try {
        await modern.connect(modernTransport);
        pidsToStop.push(modernTransport.pid!);
        // No argv root here: the server takes its cwd as the workspace.
        const result = (await modern.callTool({ name: 'read_file', arguments: { path: '/workspace/README.md', limit: 1 } })) as ToolResult;
        expect(textOf(result)).to.include('# Title');
      } finally {
        await modern.close();
      }
    });

    it('exits when the client closes, killing a running command', async () => {
      const running = call('run_shell_command', { command: 'echo $$ > shell.pid; sleep 30 & echo $! > sleep.pid; wait', timeoutMs: 60_000 });
      running.catch(() => undefined);
      const pidFile = join(workspace, 'sleep.pid');
      await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 'the command to start', 10_000);
      const shellPid = Number(await readFile(join(workspace, 'shell.pid'), 'utf8'));
      const sleepPid = Number(await readFile(pidFile, 'utf8'));
      const closing = Date.now();
      await client.close();
      // The transport ends stdin first and signals only after 2 s; the server must go on stdin EOF.
      expect(Date.now() - closing).to.be.below(2_000);
      await waitFor(() => !isAlive(serverPid), `server ${serverPid} to exit`, 3_000);
      await waitFor(() => !isAlive(shellPid) && !isAlive(sleepPid), 'the command to be killed', 3_000);
    });
  });
});
