// Runs every bench in sequence, each in its own process so that one bench's heap, sockets and
// leftover tasks cannot colour the next one's figures (the fan-out RSS figure most of all).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT, stopChild } from './lib.js';

const BENCHES = ['createTask.ts', 'fanout.ts', 'replay.ts', 'toolCall.ts', 'warmPool.ts', 'sandboxStart.ts', 'flood.ts', 'listTasks.ts'];
/** Past this a bench is stopped: each is meant to take well under a minute. */
const BENCH_TIMEOUT_MS = 240_000;

async function runBench(file: string): Promise<{ code: number | null; seconds: number; timedOut: boolean }> {
  const start = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', file)], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void stopChild(child);
  }, BENCH_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve) => child.on('close', (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  return { code, seconds: (performance.now() - start) / 1000, timedOut };
}

console.log(`Airlock benches: node ${process.version}, ${process.platform}/${process.arch}; each prints its figures beside a baseline measured in the same run.`);
const outcomes: string[] = [];
for (const file of BENCHES) {
  console.log(`\n=== ${file} ===`);
  const { code, seconds, timedOut } = await runBench(file);
  const verdict = timedOut ? `STOPPED after ${BENCH_TIMEOUT_MS / 1000} s` : code === 0 ? 'ok' : `FAILED (exit ${code}): see its output above`;
  outcomes.push(`  ${file.padEnd(14)} ${seconds.toFixed(1).padStart(5)} s  ${verdict}`);
  if (code !== 0) process.exitCode = 1;
}
console.log(`\n=== summary ===\n${outcomes.join('\n')}`);
