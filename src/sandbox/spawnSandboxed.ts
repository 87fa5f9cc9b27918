import { spawn } from 'node:child_process';
import type { ChildProcess, IOType } from 'node:child_process';
import type { Writable } from 'node:stream';
import type { SandboxedSpawn } from './processSandbox.js';

/**
 * Starts a prepared process with `stdio` for its descriptors 0–2 and a pipe for each of its
 * `fdInputs`, which is written and closed at once. Errors writing those pipes (the process died
 * first) are left to the process's own exit.
 */
export function spawnSandboxed(launch: SandboxedSpawn, stdio: [IOType, IOType, IOType]): ChildProcess {
  const inputs = launch.fdInputs ?? [];
  const child = spawn(launch.command, launch.args, {
    env: launch.env,
    cwd: launch.cwd,
    stdio: [...stdio, ...inputs.map(() => 'pipe' as const)],
    windowsHide: true,
  });
  inputs.forEach((data, index) => {
    const pipe = child.stdio[3 + index] as Writable | null;
    pipe?.on('error', () => {});
    pipe?.end(data);
  });
  return child;
}
