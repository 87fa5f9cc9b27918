import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/airlock.js', import.meta.url));

/** A real `airlock` process, its output, and the URL it listens on. */
export interface AirlockProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
  /** Kills it by PID if it is still running. */
  kill(signal?: NodeJS.Signals): void;
}

/** Runs `airlock serve [args]` with only the given environment (plus PATH), waiting until it listens. */
export async function spawnAirlock(env: Record<string, string>, timeoutMs = 15_000, args: string[] = []): Promise<AirlockProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (chunk) => (out += chunk));
  child.stderr!.on('data', (chunk) => (out += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`airlock did not start:\n${out}`)), timeoutMs);
    const check = () => {
      const match = /"url":"(http:\/\/[^"]+)".*"msg":"Airlock is listening"/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`airlock exited with ${code} before listening:\n${out}`));
    });
  });
  return {
    child, url, exited, output: () => out,
    kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, signal);
    },
  };
}

/**
 * Runs the CLI to completion. One still running after `timeoutMs` (a serve that should have
 * exited) is killed by its PID, and its code is null.
 */
export function runAirlockCli(args: string[], env: Record<string, string>, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
