import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import type { Config } from './config.js';
import { ServiceError } from './errors.js';
import { startAirlock } from './main.js';
import { createApiKey, parseDuration } from './runtime/apiKeys.js';
import { SqliteStore } from './store/sqliteStore.js';

const USAGE = `Usage:
  airlock serve                                   run the service (HOST, PORT, AIRLOCK_* from the environment)
  airlock keys create --project <name> [--name <label>] [--expires-in 30d]
                                                  create an API key; it is printed once
  airlock keys list                               list keys (id, project, name, prefix, state)
  airlock keys revoke <id>                        revoke a key at once
`;

/** Runs one CLI command; returns the exit code. */
export async function runCli(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  const [command, sub, ...rest] = argv;
  try {
    if (command === 'serve' || command === undefined) return await serve();
    if (command === 'keys' && sub === 'create') return await keysCreate(rest, out);
    if (command === 'keys' && sub === 'list') return await keysList(out);
    if (command === 'keys' && sub === 'revoke') return await keysRevoke(rest, out);
    if (command === 'help' || command === '--help' || command === '-h') {
      out.write(USAGE);
      return 0;
    }
    err.write(`Unknown command: ${argv.join(' ')}\n\n${USAGE}`);
    return 2;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof ServiceError) {
      err.write(`${e.message}\n`);
      return e instanceof ConfigError ? 78 : 2;
    }
    if (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err.write(`${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}

async function serve(): Promise<number> {
  const config = loadConfig();
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

function openStore(config: Config): SqliteStore {
  return new SqliteStore(join(config.dataDir, 'airlock.db'));
}

async function keysCreate(args: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values } = parseArgs({ args, options: { project: { type: 'string' }, name: { type: 'string' }, 'expires-in': { type: 'string' } }, strict: true });
  const config = loadConfig();
  if (!values.project) throw new ServiceError('VALIDATION_ERROR', 'keys create needs --project <name>');
  if (!config.projects[values.project]) throw new ServiceError('VALIDATION_ERROR', `No project "${values.project}" in the configuration (known: ${Object.keys(config.projects).join(', ')})`);
  const expiresInMs = values['expires-in'] ? parseDuration(values['expires-in']) : undefined;
  const store = openStore(config);
  try {
    const { key, record } = await createApiKey(store, { projectId: values.project, name: values.name, expiresInMs });
    out.write(`Created key ${record.id} for project "${record.projectId}"${record.expiresAt ? `, expires ${record.expiresAt}` : ''}.\nIt is shown only now:\n\n  ${key}\n\n`);
  } finally {
    await store.close();
  }
  return 0;
}

async function keysList(out: NodeJS.WritableStream): Promise<number> {
  const store = openStore(loadConfig());
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

async function keysRevoke(args: string[], out: NodeJS.WritableStream): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: {} });
  const id = positionals[0];
  if (!id) throw new ServiceError('VALIDATION_ERROR', 'keys revoke needs a key id (see airlock keys list)');
  const store = openStore(loadConfig());
  try {
    if (!(await store.revokeApiKey(id, new Date().toISOString()))) throw new ServiceError('NOT_FOUND', `No API key with id ${id}`);
    out.write(`Revoked ${id}.\n`);
  } finally {
    await store.close();
  }
  return 0;
}

// Run when executed directly (npm start, bin/airlock.js), not when imported by tests.
if (import.meta.url === `file://${process.argv[1]}` || process.env.AIRLOCK_CLI === '1') {
  runCli(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (error) => {
      process.stderr.write(`airlock: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
