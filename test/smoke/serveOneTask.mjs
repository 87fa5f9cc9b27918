#!/usr/bin/env node
// Smoke test of a runnable Airlock: starts `airlock serve` as a process of its own on a free
// loopback port with a data dir of its own, runs one task on the scripted model that calls a
// built-in tool in the sandbox, and stops the server by its PID with SIGTERM. Plain JavaScript, so
// that it runs on any Node without a TypeScript loader.
//
//   npm run build && node test/smoke/serveOneTask.mjs              the build output (dist/src/cli.js)
//   node test/smoke/serveOneTask.mjs bin/airlock.js                 a checkout, through tsx
//
// It prints what it checked and exits 0, or names the step that failed and exits 1.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const entry = resolve(root, process.argv[2] ?? 'dist/src/cli.js');
const key = `airlock_${randomBytes(32).toString('hex')}`;
const dataDir = mkdtempSync(join(tmpdir(), 'airlock-smoke-'));
let child;
let output = '';

function fail(step, detail = '') {
  process.stderr.write(`smoke: FAILED: ${step}${detail ? `\n${detail}` : ''}\n--- airlock output ---\n${output}\n`);
  if (child?.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
  process.exit(1);
}

async function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } catch (err) {
    return fail(what, err.message);
  } finally {
    clearTimeout(timer);
  }
}

async function api(url, path, init = {}) {
  const res = await fetch(`${url}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } });
  return { status: res.status, body: await res.json() };
}

if (!existsSync(entry)) fail(`no ${entry}`, 'build it first: npm run build');
child = spawn(process.execPath, [entry, 'serve', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir], {
  env: { PATH: process.env.PATH ?? '', AIRLOCK_BOOTSTRAP_API_KEY: key },
  stdio: ['ignore', 'pipe', 'pipe'],
});
child.stdout.on('data', (chunk) => (output += chunk));
child.stderr.on('data', (chunk) => (output += chunk));
const exited = new Promise((resolveExit) => child.once('exit', (code, signal) => resolveExit({ code, signal })));
void exited.then(({ code, signal }) => {
  if (!stopping) fail(`airlock exited (code ${code}, signal ${signal}) before it was stopped`);
});
let stopping = false;

const url = await within(30_000, 'airlock to listen', new Promise((resolveUrl) => {
  const check = () => {
    const match = /"url":"(http:\/\/[^"]+)".*"msg":"Airlock is listening"/.exec(output);
    if (match) resolveUrl(match[1]);
  };
  child.stdout.on('data', check);
}));
console.log(`smoke: ${entry.slice(root.length)} on Node ${process.version} listens on ${url} (PID ${child.pid})`);

const message = '/call write_file {"path":"downloads/smoke.txt","content":"made by the smoke test\\n"}\n/reply smoke done';
const created = await api(url, '/tasks', { method: 'POST', body: JSON.stringify({ message }) });
if (created.status !== 201) fail('creating a task', JSON.stringify(created));
const id = created.body.data.id;
const task = await within(60_000, 'the task to finish', (async () => {
  for (;;) {
    const { body } = await api(url, `/tasks/${id}`);
    if (['completed', 'failed', 'cancelled'].includes(body.data.status)) return body.data;
    await new Promise((resolveWait) => setTimeout(resolveWait, 50));
  }
})());
if (task.status !== 'completed') fail(`the task ended ${task.status}`, JSON.stringify(task.error));
if (task.output?.content !== 'smoke done') fail('the task\'s answer', JSON.stringify(task.output));
const call = task.output.toolCalls?.[0];
if (call?.status !== 'success') fail('the write_file call', JSON.stringify(call));
const written = join(dataDir, 'workspaces', id, 'downloads', 'smoke.txt');
if (readFileSync(written, 'utf8') !== 'made by the smoke test\n') fail(`the file the tool wrote (${written})`);
console.log(`smoke: task ${id} completed; its write_file call ran in the workspace`);

stopping = true;
process.kill(child.pid, 'SIGTERM');
const end = await within(20_000, 'airlock to stop on SIGTERM', exited);
if (end.code !== 0) fail(`airlock exited ${end.code} (signal ${end.signal}) on SIGTERM`);
rmSync(dataDir, { recursive: true, force: true });
console.log('smoke: stopped by SIGTERM, exit 0');
