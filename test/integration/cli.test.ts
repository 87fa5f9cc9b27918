import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApiKey } from '../../src/runtime/security/apiKeys.js';
import { SqliteStore } from '../../src/store/sqliteStore.js';
import { BIN, runAirlockCli } from '../support/process.js';
import { removeDataDir } from '../support/removeDataDir.js';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

describe('The airlock command line', function () {
  this.timeout(120_000);
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'airlock-cli-'));
  });
  afterEach(async () => {
    await removeDataDir(dataDir);
  });

  it('refuses unknown options, extra arguments and unknown commands with exit code 2 and the usage, for every command', async () => {
    const cases: Array<[string[], string, string]> = [
      [['serve', '--bogus'], "unknown option '--bogus'", 'Usage: airlock serve [--port <n>] [--host <address>] [--data-dir <dir>]'],
      [['serve', 'extra'], "unexpected argument 'extra'", 'Usage: airlock serve'],
      [['serve', '--port'], "option '--port <value>' argument missing", 'Usage: airlock serve'],
      [['keys', 'list', '--bogus'], "unknown option '--bogus'", 'Usage: airlock keys list [--data-dir <dir>]'],
      [['keys', 'list', 'extra'], "unexpected argument 'extra'", 'Usage: airlock keys list'],
      [['keys', 'create', '--project', 'default', 'extra'], "unexpected argument 'extra'", 'Usage: airlock keys create --project <name>'],
      [['keys', 'create', '--project', 'default', '--nope'], "unknown option '--nope'", 'Usage: airlock keys create'],
      [['keys', 'create'], 'keys create needs --project <name>', 'Usage: airlock keys create'],
      [['keys', 'revoke'], 'missing <id>', 'Usage: airlock keys revoke <id> [--data-dir <dir>]'],
      [['keys', 'revoke', 'key_a', 'key_b'], "unexpected argument 'key_b'", 'Usage: airlock keys revoke'],
      [['keys'], 'keys needs a subcommand: create, list or revoke', '  airlock keys list [--data-dir <dir>]'],
      [['keys', 'rotate'], 'unknown command: keys rotate', '  airlock keys revoke <id>'],
      [['nope'], 'unknown command: nope', '  airlock serve [--port <n>]'],
      [['help', 'me'], "unexpected argument 'me'", '  airlock keys create'],
      [['--version', 'now'], "unexpected argument 'now'", '  airlock serve'],
    ];
    // One that took `serve extra` for `serve` would serve until killed: its code would be null.
    // Three at a time: each is a Node process starting tsx.
    const results: Array<Awaited<ReturnType<typeof runAirlockCli>>> = [];
    for (let at = 0; at < cases.length; at += 3) {
      results.push(...await Promise.all(cases.slice(at, at + 3).map(([args]) => runAirlockCli(args, { AIRLOCK_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' }))));
    }
    results.forEach((result, index) => {
      const [args, problem, usage] = cases[index]!;
      const what = `airlock ${args.join(' ')}: ${result.stderr}`;
      expect(result.code, what).to.equal(2);
      expect(result.stderr, what).to.include(`airlock: ${problem}\n`).and.include(usage);
      expect(result.stdout, what).to.equal('');
    });
    // Nothing was served, and no key command opened the database.
    expect(existsSync(join(dataDir, 'airlock.db'))).to.equal(false);
  });

  it('prints the version, the usage, and a command\'s own usage', async () => {
    const [version, short, help, commandHelp] = await Promise.all([
      runAirlockCli(['--version'], {}), runAirlockCli(['-v'], {}), runAirlockCli(['help'], {}), runAirlockCli(['keys', 'revoke', '--help'], {}),
    ]);
    expect(version).to.deep.equal({ code: 0, stdout: `airlock ${VERSION}\n`, stderr: '' });
    expect(short.stdout).to.equal(`airlock ${VERSION}\n`);
    expect(help.code).to.equal(0);
    for (const line of ['airlock serve [--port <n>] [--host <address>] [--data-dir <dir>]', 'airlock keys create --project <name>', 'airlock keys list', 'airlock keys revoke <id>', 'airlock --version']) expect(help.stdout).to.include(line);
    expect(commandHelp).to.deep.equal({ code: 0, stdout: 'Usage: airlock keys revoke <id> [--data-dir <dir>]\n', stderr: '' });
  });

  it('takes --data-dir for the key commands over AIRLOCK_DATA_DIR', async () => {
    const env = { AIRLOCK_DATA_DIR: join(dataDir, 'not-this-one') };
    const target = join(dataDir, 'this-one');
    const created = await runAirlockCli(['keys', 'create', '--project', 'default', '--name', 'flagged', '--data-dir', target], env);
    expect(created.code, created.stderr).to.equal(0);
    const id = /Created key (key_\w+)/.exec(created.stdout)![1]!;
    expect((await runAirlockCli(['keys', 'list', '--data-dir', target], env)).stdout).to.include(id).and.include('flagged');
    expect((await runAirlockCli(['keys', 'revoke', id, '--data-dir', target], env)).stdout).to.equal(`Revoked ${id}.\n`);
    expect(existsSync(env.AIRLOCK_DATA_DIR)).to.equal(false);
  });

  it('ends quietly with code 0 when the reader of its output stops early: airlock keys list | head -1', async () => {
    // Far more than a pipe holds (64 KiB), so that airlock is still writing when head has gone.
    const store = new SqliteStore(join(dataDir, 'airlock.db'));
    await Promise.all(Array.from({ length: 3_000 }, (_, index) => createApiKey(store, { projectId: 'default', name: `key number ${index}` })));
    await store.close();
    const shell = spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" keys list | head -1`], {
      env: { PATH: process.env.PATH ?? '', AIRLOCK_DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    shell.stdout.on('data', (chunk) => (stdout += chunk));
    shell.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise((resolve) => shell.once('exit', resolve));
    expect(stderr).to.equal('');
    expect(code, 'the pipeline\'s status, which is airlock\'s under pipefail').to.equal(0);
    expect(stdout).to.match(/^key_\w+ {2}default {2}key number \d+ {2}airlock_[0-9a-f]{8}… {2}active\n$/);
  });
});
