import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, configSecrets, DEFAULT_MODEL, DEFAULT_PROJECT, loadConfig, projectModel } from '../../src/config.js';

const VALID_KEY = `airlock_${'0f'.repeat(32)}`;

function configError(load: () => unknown): ConfigError {
  try {
    load();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  let dir: string;
  const cwd = resolve(tmpdir(), 'airlock-config-cwd');

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-config-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes a config file in the test's directory; returns its absolute path. */
  function configFile(content: unknown, name = 'airlock.config.json'): string {
    const path = join(dir, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  describe('defaults', () => {
    it('listens on 127.0.0.1:8080 and keeps data in ./data under the working directory', () => {
      const config = loadConfig({}, cwd);
      expect(config.host).to.equal('127.0.0.1');
      expect(config.port).to.equal(8080);
      expect(config.dataDir).to.equal(join(cwd, 'data'));
      expect(config.logLevel).to.equal('info');
      expect(config.configPath).to.equal(undefined);
    });

    it('uses the scripted model when ANTHROPIC_API_KEY is not set', () => {
      const config = loadConfig({}, cwd);
      expect(config.model.provider).to.equal('scripted');
      expect(config.model.apiKey).to.equal(undefined);
    });

    it('uses Anthropic with the key when ANTHROPIC_API_KEY is set', () => {
      const config = loadConfig({ ANTHROPIC_API_KEY: 'sk-ant-test' }, cwd);
      expect(config.model.provider).to.equal('anthropic');
      expect(config.model.apiKey).to.equal('sk-ant-test');
      expect(config.model.name).to.equal(DEFAULT_MODEL);
    });

    it('always has the default project, also when the file configures others', () => {
      expect(loadConfig({}, cwd).projects).to.have.property(DEFAULT_PROJECT);
      const path = configFile({ projects: { other: { systemPrompt: 'hi' } } });
      const projects = loadConfig({ AIRLOCK_CONFIG: path }, cwd).projects;
      expect(projects).to.have.keys(DEFAULT_PROJECT, 'other');
    });

    it('takes at most 20 files of 50 MiB per request, and keeps workspaces forever', () => {
      const config = loadConfig({}, cwd);
      expect(config.uploads).to.deep.equal({
        maxFiles: 20,
        maxFileBytes: 50 * 1024 * 1024,
        archives: { maxExpandedBytes: 1024 * 1024 * 1024, maxEntries: 10_000, maxCompressionRatio: 100 },
      });
      expect(config.workspaces).to.deep.equal({ sweepIntervalMs: 600_000 });
    });

    it('treats empty environment variables as unset', () => {
      const config = loadConfig({ PORT: '', HOST: '', AIRLOCK_DATA_DIR: '', ANTHROPIC_API_KEY: '', AIRLOCK_BOOTSTRAP_API_KEY: '' }, cwd);
      expect(config).to.include({ host: '127.0.0.1', port: 8080, dataDir: join(cwd, 'data') });
      expect(config.model.provider).to.equal('scripted');
      expect(config.bootstrapApiKey).to.equal(undefined);
    });
  });

  describe('the config file', () => {
    it('is read from AIRLOCK_CONFIG relative to the working directory', () => {
      configFile({ server: { port: 9000 } });
      const config = loadConfig({ AIRLOCK_CONFIG: 'airlock.config.json' }, dir);
      expect(config.port).to.equal(9000);
      expect(config.configPath).to.equal(join(dir, 'airlock.config.json'));
    });

    it('gives its values where the environment says nothing, and the environment wins over it', () => {
      const path = configFile({
        server: { host: '0.0.0.0', port: 9000, heartbeatIntervalMs: 500 },
        dataDir: 'file-data',
        logLevel: 'warn',
        tasks: { concurrency: 3, maxTurns: 7 },
        model: { name: 'file-model', maxTokens: 100 },
      });
      const fromFile = loadConfig({ AIRLOCK_CONFIG: path }, cwd);
      expect(fromFile).to.include({ host: '0.0.0.0', port: 9000, heartbeatIntervalMs: 500, dataDir: join(cwd, 'file-data'), logLevel: 'warn', concurrency: 3, maxTurns: 7 });
      expect(fromFile.model).to.include({ name: 'file-model', maxTokens: 100 });

      const overridden = loadConfig({
        AIRLOCK_CONFIG: path, HOST: '10.0.0.1', PORT: '7000', AIRLOCK_HEARTBEAT_MS: '250', AIRLOCK_DATA_DIR: '/var/airlock',
        AIRLOCK_LOG_LEVEL: 'debug', AIRLOCK_CONCURRENCY: '5', AIRLOCK_MODEL: 'env-model',
      }, cwd);
      expect(overridden).to.include({ host: '10.0.0.1', port: 7000, heartbeatIntervalMs: 250, dataDir: '/var/airlock', logLevel: 'debug', concurrency: 5, maxTurns: 7 });
      expect(overridden.model).to.include({ name: 'env-model', maxTokens: 100 });
    });

    it('lets the command line\'s --port, --host and --data-dir win over the environment and the file', () => {
      const path = configFile({ server: { host: '0.0.0.0', port: 9000 }, dataDir: 'file-data' });
      const env = { AIRLOCK_CONFIG: path, HOST: '10.0.0.1', PORT: '7000', AIRLOCK_DATA_DIR: '/var/airlock' };
      expect(loadConfig(env, cwd, { port: '6000', host: '::1', dataDir: 'flag-data' })).to.include({ port: 6000, host: '::1', dataDir: join(cwd, 'flag-data') });
      // A flag not given leaves the setting to the environment.
      expect(loadConfig(env, cwd, { port: '6000' })).to.include({ port: 6000, host: '10.0.0.1', dataDir: '/var/airlock' });
      const error = configError(() => loadConfig(env, cwd, { port: '70000', host: '', dataDir: '' }));
      expect(error.problems).to.include.members(['--port must be an integer from 0 to 65535 (got "70000")', '--host needs a value', '--data-dir needs a value']);
    });

    it('sets upload limits, archive caps and workspace retention, field by field', () => {
      const path = configFile({ uploads: { maxFileBytes: 1024, archives: { maxEntries: 5 } }, workspaces: { retentionMs: 86_400_000 } });
      const config = loadConfig({ AIRLOCK_CONFIG: path }, cwd);
      expect(config.uploads).to.deep.equal({ maxFiles: 20, maxFileBytes: 1024, archives: { maxExpandedBytes: 1024 * 1024 * 1024, maxEntries: 5, maxCompressionRatio: 100 } });
      expect(config.workspaces).to.deep.equal({ retentionMs: 86_400_000, sweepIntervalMs: 600_000 });
      const bad = configFile({ uploads: { maxFiles: 0, maxFileBytes: 'big', archives: { ratio: 3 } }, workspaces: { retentionMs: -1 } }, 'bad.json');
      const text = configError(() => loadConfig({ AIRLOCK_CONFIG: bad }, cwd)).problems.join('\n');
      expect(text).to.include('/uploads/maxFiles must be >= 1');
      expect(text).to.include('/uploads/maxFileBytes must be integer');
      expect(text).to.include('/uploads/archives must NOT have additional properties (unknown property "ratio")');
      expect(text).to.include('/workspaces/retentionMs must be >= 1');
    });

    it('lets model.provider "scripted" win over a set ANTHROPIC_API_KEY', () => {
      const path = configFile({ model: { provider: 'scripted' } });
      expect(loadConfig({ AIRLOCK_CONFIG: path, ANTHROPIC_API_KEY: 'sk-ant-test' }, cwd).model.provider).to.equal('scripted');
    });
  });

  describe('sandbox', () => {
    it('defaults to auto with bubblewrap from PATH, 2048 MiB, 512 processes, no extra paths, uid 61000 and 1 GiB workspaces; projects allow the network', () => {
      const config = loadConfig({}, cwd);
      expect(config.sandbox).to.deep.equal({ mode: 'auto', bwrapPath: 'bwrap', memoryLimitMb: 2048, maxProcesses: 512, readOnlyPaths: [], uid: 61000, gid: 61000, workspaceLimitMb: 1024 });
      expect(config.projects.default!.sandbox).to.equal(undefined);
    });

    it('reads the file\'s sandbox settings, and AIRLOCK_SANDBOX_MODE wins over its mode', () => {
      const path = configFile({ sandbox: { mode: 'bwrap', bwrapPath: 'tools/bwrap', memoryLimitMb: 0, maxProcesses: 64, readOnlyPaths: ['/srv/tools/'], uid: 5000, workspaceLimitMb: 0 }, projects: { offline: { sandbox: { network: 'deny' } } } });
      const config = loadConfig({ AIRLOCK_CONFIG: path }, cwd);
      expect(config.sandbox).to.deep.equal({ mode: 'bwrap', bwrapPath: join(cwd, 'tools/bwrap'), memoryLimitMb: 0, maxProcesses: 64, readOnlyPaths: ['/srv/tools'], uid: 5000, gid: 5000, workspaceLimitMb: 0 });
      expect(config.projects.offline!.sandbox).to.deep.equal({ network: 'deny' });
      expect(loadConfig({ AIRLOCK_CONFIG: path, AIRLOCK_SANDBOX_MODE: 'auto' }, cwd).sandbox.mode).to.equal('auto');
    });

    it('refuses a config that would show a sandbox the data directory or the config file, naming each key', () => {
      const dataDir = join(dir, 'data');
      const path = configFile({
        dataDir,
        sandbox: { readOnlyPaths: [join(dataDir, 'workspaces')] },
        projects: { default: { mcpServers: {
          leaky: { type: 'stdio', command: 'node', args: [join(dataDir, 'airlock.db')], sandbox: { readOnlyPaths: [dataDir] } },
          config: { type: 'stdio', command: 'cat', args: ['{{mcp.FILE}}', join(dir, 'airlock.config.json')] },
        } } },
      });
      const message = (() => {
        try {
          loadConfig({ AIRLOCK_CONFIG: path }, cwd);
        } catch (err) {
          return (err as Error).message;
        }
        throw new Error('loadConfig accepted it');
      })();
      expect(message).to.include(`sandbox.readOnlyPaths[0]: "${join(dataDir, 'workspaces')}" is inside Airlock's data directory`);
      expect(message).to.include(`projects.default.mcpServers.leaky.args[0]: "${join(dataDir, 'airlock.db')}" is inside Airlock's data directory`);
      expect(message).to.include('projects.default.mcpServers.leaky.sandbox.readOnlyPaths[0]');
      expect(message).to.include(`projects.default.mcpServers.config.args[1]: "${join(dir, 'airlock.config.json')}" is Airlock's config file, which no sandbox shows`);
      expect(message).to.not.include('args[0]: "{{mcp.FILE}}"');
    });

    it('refuses the sandbox user root and a workspace limit too small for a filesystem', () => {
      const problem = (sandbox: Record<string, unknown>) => {
        try {
          loadConfig({ AIRLOCK_CONFIG: configFile({ sandbox }) }, cwd);
        } catch (err) {
          return (err as Error).message;
        }
        throw new Error('loadConfig accepted it');
      };
      expect(problem({ uid: 0 })).to.include('/sandbox/uid');
      expect(problem({ workspaceLimitMb: 4 })).to.include('sandbox.workspaceLimitMb must be 0 (no limit) or at least 16 (got 4)');
    });

    it('refuses an unknown AIRLOCK_SANDBOX_MODE, relative or root readOnlyPaths, and a denied network without a sandbox', () => {
      const path = configFile({ sandbox: { mode: 'none', readOnlyPaths: ['tools', '/'] }, projects: { offline: { sandbox: { network: 'deny' } } } });
      expect(configError(() => loadConfig({ AIRLOCK_SANDBOX_MODE: 'docker' }, cwd)).problems).to.deep.equal(['AIRLOCK_SANDBOX_MODE must be one of auto, bwrap, none (got "docker")']);
      const text = configError(() => loadConfig({ AIRLOCK_CONFIG: path }, cwd)).problems.join('\n');
      expect(text).to.include('sandbox.readOnlyPaths: "tools" must be an absolute path other than /');
      expect(text).to.include('sandbox.readOnlyPaths: "/" must be an absolute path other than /');
      expect(text).to.include('projects.offline.sandbox.network is "deny", which needs the sandbox, but sandbox.mode is "none"');
    });
  });

  describe('problems', () => {
    it('checks MCP servers: transport fields, url scheme and host, cwd inside the workspace, the reserved name', () => {
      const path = configFile({
        projects: {
          default: {
            mcpServers: {
              web: { type: 'http', url: '{{mcp.URL}}', command: 'x' },
              local: { type: 'stdio', command: 'srv', cwd: '../elsewhere', headers: { A: 'b' } },
              abs: { type: 'stdio', command: 'srv', cwd: '/etc' },
              old: { type: 'sse', url: 'http://127.0.0.1:1/sse', protocol: '2026-07-28' },
              workspace: { type: 'stdio', command: 'srv' },
              fine: { type: 'http', url: 'https://mcp.example.com/mcp?tenant={{mcp.TENANT}}', headers: { Authorization: 'Bearer {{mcp.TOKEN}}' } },
            },
          },
        },
      });
      const text = configError(() => loadConfig({ AIRLOCK_CONFIG: path }, cwd)).problems.join('\n');
      expect(text).to.include('mcpServers.web.command does not apply to a http server');
      expect(text).to.include('mcpServers.web.url must start with http:// or https://');
      expect(text).to.include('mcpServers.local.headers does not apply to a stdio server');
      expect(text).to.include('mcpServers.local.cwd must be a path inside the task workspace');
      expect(text).to.include('mcpServers.abs.cwd must be a path inside the task workspace');
      expect(text).to.include('mcpServers.old.protocol');
      expect(text).to.include('"workspace" is the built-in server\'s');
      expect(text).not.to.include('mcpServers.fine');
    });

    it('lists every problem of the file and of the environment in one ConfigError', () => {
      const path = configFile({
        server: { port: 'eighty', shutdownGraceMs: -1 },
        tasks: { concurrency: 0 },
        logLevel: 'loud',
        bogus: true,
      });
      const err = configError(() => loadConfig({ AIRLOCK_CONFIG: path, AIRLOCK_CONCURRENCY: 'many', AIRLOCK_JWT_SECRET: 'short' }, cwd));
      const text = err.problems.join('\n');
      expect(text).to.include('/server/port');
      expect(text).to.include('/server/shutdownGraceMs');
      expect(text).to.include('/tasks/concurrency');
      expect(text).to.include('/logLevel');
      expect(text).to.include('bogus');
      expect(text).to.include('AIRLOCK_CONCURRENCY');
      expect(text).to.include('AIRLOCK_JWT_SECRET');
      expect(err.problems.length).to.be.at.least(7);
      for (const problem of err.problems) expect(err.message).to.include(problem);
    });

    it('names the file in each of its problems', () => {
      const path = configFile({ logLevel: 'loud' });
      const err = configError(() => loadConfig({ AIRLOCK_CONFIG: path }, cwd));
      expect(err.problems).to.have.length(1);
      expect(err.problems[0]).to.include(path);
    });

    it('lists a missing config file as a problem, alongside the environment problems', () => {
      const path = join(dir, 'missing.json');
      const err = configError(() => loadConfig({ AIRLOCK_CONFIG: path, PORT: '70000' }, cwd));
      expect(err.problems).to.have.length(2);
      expect(err.problems.some((p) => p.includes(path))).to.equal(true);
      expect(err.problems.some((p) => p.startsWith('PORT'))).to.equal(true);
    });

    it('lists a file that is not valid JSON as a problem', () => {
      const path = configFile('{ "server": { "port": 80, } }');
      const err = configError(() => loadConfig({ AIRLOCK_CONFIG: path }, cwd));
      expect(err.problems).to.have.length(1);
      expect(err.problems[0]).to.include(path);
    });

    it('refuses model.provider "anthropic" without ANTHROPIC_API_KEY', () => {
      const path = configFile({ model: { provider: 'anthropic' } });
      const err = configError(() => loadConfig({ AIRLOCK_CONFIG: path }, cwd));
      expect(err.problems.join('\n')).to.include('ANTHROPIC_API_KEY');
    });

    it('refuses a project whose model.provider is "anthropic" without ANTHROPIC_API_KEY', () => {
      // The project's model has "the same fields as model" (docs/configuration.md), so the same rule
      // applies; otherwise the project silently runs on the scripted model (main.ts modelFor).
      const path = configFile({ projects: { bot: { model: { provider: 'anthropic' } } } });
      const err = configError(() => loadConfig({ AIRLOCK_CONFIG: path }, cwd));
      expect(err.problems.join('\n')).to.include('ANTHROPIC_API_KEY').and.to.include('bot');
    });

    it('refuses a malformed AIRLOCK_BOOTSTRAP_API_KEY without showing its value', () => {
      const value = `airlock_${'AB'.repeat(32)}`;
      const err = configError(() => loadConfig({ AIRLOCK_BOOTSTRAP_API_KEY: value }, cwd));
      expect(err.problems).to.have.length(1);
      expect(err.problems[0]).to.include('AIRLOCK_BOOTSTRAP_API_KEY');
      expect(err.message).not.to.include(value);
      expect(err.message).not.to.include('ABAB');
    });

    it('accepts a well-formed AIRLOCK_BOOTSTRAP_API_KEY', () => {
      expect(loadConfig({ AIRLOCK_BOOTSTRAP_API_KEY: VALID_KEY }, cwd).bootstrapApiKey).to.equal(VALID_KEY);
    });

    it('refuses an ANTHROPIC_BASE_URL that is not http(s)', () => {
      const err = configError(() => loadConfig({ ANTHROPIC_API_KEY: 'k', ANTHROPIC_BASE_URL: 'ftp://example.com' }, cwd));
      expect(err.problems.join('\n')).to.include('ANTHROPIC_BASE_URL');
    });
  });
});

describe('projectModel', () => {
  it('lays a project\'s model fields over the process model and keeps the process API key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-config-'));
    try {
      const path = join(dir, 'airlock.config.json');
      writeFileSync(path, JSON.stringify({
        model: { name: 'base-model', maxTokens: 1000, maxRetries: 2 },
        projects: { bot: { model: { maxTokens: 50, name: 'bot-model' } } },
      }));
      const config = loadConfig({ AIRLOCK_CONFIG: path, ANTHROPIC_API_KEY: 'sk-ant-process', AIRLOCK_MODEL: 'env-model' }, dir);
      expect(projectModel(config, 'bot')).to.deep.include({ provider: 'anthropic', apiKey: 'sk-ant-process', name: 'bot-model', maxTokens: 50, maxRetries: 2 });
      expect(projectModel(config, DEFAULT_PROJECT)).to.deep.include({ apiKey: 'sk-ant-process', name: 'env-model', maxTokens: 1000 });
      expect(projectModel(config, 'unknown')).to.deep.equal(config.model);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never takes an apiKey from a project, even one set on the object', () => {
    const config = loadConfig({ ANTHROPIC_API_KEY: 'sk-ant-process' }, tmpdir());
    config.projects.sneaky = { model: { name: 'x', apiKey: 'sk-other' } as never };
    expect(projectModel(config, 'sneaky').apiKey).to.equal('sk-ant-process');
  });
});

describe('configSecrets', () => {
  it('lists the API key, the bootstrap key and the JWT secret that are set', () => {
    const jwt = 'j'.repeat(32);
    const config = loadConfig({ ANTHROPIC_API_KEY: 'sk-ant-secret', AIRLOCK_BOOTSTRAP_API_KEY: VALID_KEY, AIRLOCK_JWT_SECRET: jwt }, tmpdir());
    expect(configSecrets(config)).to.deep.equal({ ANTHROPIC_API_KEY: 'sk-ant-secret', AIRLOCK_BOOTSTRAP_API_KEY: VALID_KEY, AIRLOCK_JWT_SECRET: jwt });
  });

  it('is empty when none is set', () => {
    expect(configSecrets(loadConfig({}, tmpdir()))).to.deep.equal({});
  });
});
