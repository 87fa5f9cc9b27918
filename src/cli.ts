import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import type { Config, ConfigFlags } from './config.js';
import { ServiceError } from './errors.js';
import { PROJECT_ROOT } from './projectRoot.js';
import { StartupError } from './startupError.js';
import type { SqliteStore } from './store/sqliteStore.js';

type Out = NodeJS.WritableStream;
type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | undefined>;

/** One command of `airlock`: its usage line, the options it takes, and what it does. */
interface Command {
  /** The usage line, after "airlock ". */
  usage: string;
  /** What it does, for the usage text. */
  summary: string;
  options: Options;
  /** The positional arguments it takes, by name (exactly these, in this order). */
  positionals?: string[];
  run(values: Values, positionals: string[], out: Out): Promise<number>;
}

const DATA_DIR: Options = { 'data-dir': { type: 'string' } };

const COMMANDS: Record<string, Command> = {
  serve: {
    usage: 'serve [--port <n>] [--host <address>] [--data-dir <dir>]',
    summary: 'run the service; the flags win over PORT, HOST and AIRLOCK_DATA_DIR',
    options: { port: { type: 'string' }, host: { type: 'string' }, ...DATA_DIR },
    run: (values) => serve({ port: str(values.port), host: str(values.host), dataDir: str(values['data-dir']) }),
  },
  'keys create': {
    usage: 'keys create --project <name> [--name <label>] [--expires-in 30d] [--data-dir <dir>]',
    summary: 'create an API key; it is printed once',
    options: { project: { type: 'string' }, name: { type: 'string' }, 'expires-in': { type: 'string' }, ...DATA_DIR },
    run: (values, _, out) => keysCreate(values, out),
  },
  'keys list': {
    usage: 'keys list [--data-dir <dir>]',
    summary: 'list keys (id, project, name, prefix, state)',
    options: DATA_DIR,
    run: (values, _, out) => keysList(values, out),
  },
  'keys revoke': {
    usage: 'keys revoke <id> [--data-dir <dir>]',
    summary: 'revoke a key at once',
    options: DATA_DIR,
    positionals: ['<id>'],
    run: (values, [id], out) => keysRevoke(values, id!, out),
  },
};

const USAGE = `Usage:
${Object.values(COMMANDS).map((command) => `  airlock ${command.usage}\n      ${command.summary}`).join('\n')}
  airlock help | --help      print this
  airlock --version          print the version
`;

/** A mistake in the command line: exit code 2, with the usage of the command it concerns. */
class UsageError extends Error {
  constructor(message: string, readonly usage: string) {
    super(message);
  }
}

/** Runs one CLI command; returns the exit code. */
export async function runCli(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  try {
    const [first, second] = argv;
    if (first === 'help' || first === '--help' || first === '-h') return only(argv, 1, USAGE, () => write(out, USAGE));
    if (first === '--version' || first === '-v') return only(argv, 1, USAGE, () => write(out, `airlock ${version()}\n`));
    if (first === undefined) return await COMMANDS.serve!.run({}, [], out);
    const name = first === 'keys' ? `keys ${second ?? ''}` : first;
    const command = COMMANDS[name];
    if (!command) {
      if (first === 'keys') throw new UsageError(second === undefined ? 'keys needs a subcommand: create, list or revoke' : `unknown command: keys ${second}`, keysUsage());
      throw new UsageError(`unknown command: ${first}`, USAGE);
    }
    const args = argv.slice(name.split(' ').length);
    if (args.includes('--help') || args.includes('-h')) return write(out, `Usage: airlock ${command.usage}\n`);
    const { values, positionals } = parse(command, args);
    return await command.run(values, positionals, out);
  } catch (e) {
    if (e instanceof UsageError) {
      err.write(`airlock: ${e.message}\n${e.usage.startsWith('Usage') ? e.usage : `Usage: ${e.usage}\n`}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      err.write(`${e.message}\n`);
      return 78;
    }
    if (e instanceof StartupError) {
      err.write(`airlock: ${e.message}\n`);
      return 1;
    }
    if (e instanceof ServiceError) {
      err.write(`${e.message}\n`);
      return 2;
    }
    throw e;
  }
}

/** The options and exactly the positionals the command takes, or a UsageError. */
function parse(command: Command, args: string[]): { values: Values; positionals: string[] } {
  const usage = `airlock ${command.usage}`;
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: command.options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (e) {
    // Node's messages go on with advice about "--"; their first sentence says what is wrong.
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) throw new UsageError(firstSentence((e as Error).message), usage);
    throw e;
  }
  const wanted = command.positionals ?? [];
  if (parsed.positionals.length > wanted.length) throw new UsageError(`unexpected argument '${parsed.positionals[wanted.length]}'`, usage);
  if (parsed.positionals.length < wanted.length) throw new UsageError(`missing ${wanted[parsed.positionals.length]}`, usage);
  return parsed;
}

function firstSentence(message: string): string {
  const sentence = message.split(/\.\s/)[0]!.replace(/\.$/, '');
  return sentence.charAt(0).toLowerCase() + sentence.slice(1);
}

function only(argv: string[], count: number, usage: string, then: () => number): number {
  if (argv.length > count) throw new UsageError(`unexpected argument '${argv[count]}'`, usage);
  return then();
}

function keysUsage(): string {
  return `Usage:\n${Object.entries(COMMANDS).filter(([name]) => name.startsWith('keys ')).map(([, command]) => `  airlock ${command.usage}`).join('\n')}\n`;
}

function write(out: Out, text: string): number {
  out.write(text);
  return 0;
}

function str(value: string | boolean | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function version(): string {
  return (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

async function serve(flags: ConfigFlags): Promise<number> {
  const config = loadConfig(process.env, process.cwd(), flags);
  // Imported when needed, so that a usage error or --version does not load the whole service.
  const { startAirlock } = await import('./main.js');
  const airlock = await startAirlock(config);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      airlock.logger.info({ signal }, 'signal received');
      airlock.close().then(resolve, (error) => {
        airlock.logger.error({ err: error }, 'shutdown failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

function keysConfig(values: Values): Config {
  return loadConfig(process.env, process.cwd(), { dataDir: str(values['data-dir']) });
}

/** The key commands work on the database directly, whether or not a server is running. */
async function openStore(config: Config): Promise<SqliteStore> {
  const { SqliteStore } = await import('./store/sqliteStore.js');
  return new SqliteStore(join(config.dataDir, 'airlock.db'));
}

async function keysCreate(values: Values, out: Out): Promise<number> {
  const project = str(values.project);
  const config = keysConfig(values);
  if (!project) throw new UsageError('keys create needs --project <name>', `airlock ${COMMANDS['keys create']!.usage}`);
  if (!config.projects[project]) throw new ServiceError('VALIDATION_ERROR', `No project "${project}" in the configuration (known: ${Object.keys(config.projects).join(', ')})`);
  const { createApiKey, parseDuration } = await import('./runtime/security/apiKeys.js');
  const expiresIn = str(values['expires-in']);
  const expiresInMs = expiresIn ? parseDuration(expiresIn) : undefined;
  const store = await openStore(config);
  try {
    const { key, record } = await createApiKey(store, { projectId: project, name: str(values.name), expiresInMs });
    out.write(`Created key ${record.id} for project "${record.projectId}"${record.expiresAt ? `, expires ${record.expiresAt}` : ''}.\nIt is shown only now:\n\n  ${key}\n\n`);
  } finally {
    await store.close();
  }
  return 0;
}

async function keysList(values: Values, out: Out): Promise<number> {
  const store = await openStore(keysConfig(values));
  try {
    const now = Date.now();
    const keys = await store.listApiKeys();
    if (!keys.length) out.write('No API keys.\n');
    for (const key of keys) {
      const state = key.revokedAt ? `revoked ${key.revokedAt}` : key.expiresAt && Date.parse(key.expiresAt) <= now ? `expired ${key.expiresAt}` : key.expiresAt ? `active, expires ${key.expiresAt}` : 'active';
      out.write(`${key.id}  ${key.projectId}  ${key.name ?? '-'}  ${key.keyPrefix}…  ${state}\n`);
    }
  } finally {
    await store.close();
  }
  return 0;
}

async function keysRevoke(values: Values, id: string, out: Out): Promise<number> {
  const store = await openStore(keysConfig(values));
  try {
    if (!(await store.revokeApiKey(id, new Date().toISOString()))) throw new ServiceError('NOT_FOUND', `No API key with id ${id}`);
    out.write(`Revoked ${id}.\n`);
  } finally {
    await store.close();
  }
  return 0;
}

// Run when executed directly (npm start, bin/airlock.js, node dist/src/cli.js), not when imported by tests.
if (import.meta.url === `file://${process.argv[1]}` || process.env.AIRLOCK_CLI === '1') {
  const args = process.argv.slice(2);
  const serving = args[0] === undefined || args[0] === 'serve';
  // A reader that stops early (`airlock keys list | head -1`) closes the pipe: the output is no
  // longer wanted, which is no failure. A server goes on serving without its stdout.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    if (!serving) process.exit(process.exitCode ?? 0);
  });
  runCli(args).then(
    (code) => {
      process.exitCode = code;
      // A start that failed has closed what it opened; should anything still hold the event loop, do not hang.
      if (code !== 0) setTimeout(() => process.exit(code), 2_000).unref();
    },
    (error) => {
      process.stderr.write(`airlock: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
