import type { NetworkPolicy } from '../config.js';

/** One process of a task (a stdio MCP server, the built-in workspace server) to start in the task's sandbox. */
export interface SandboxRequest {
  command: string;
  args: string[];
  /** The process's whole environment; the sandbox adds none of Airlock's own variables. */
  env: Record<string, string>;
  /** The task's workspace directory on the host. */
  workspaceDir: string;
  /** The working directory on the host: the workspace or a directory inside it. */
  cwd: string;
  /** Whether the process may use the network. */
  network: NetworkPolicy;
  /** Host paths shown read-only to this process besides what every sandbox shows (a stdio server's own files). */
  readOnlyPaths?: readonly string[];
}

/**
 * How to start the process: run `command args` with exactly `env` in `cwd`, write each of
 * `fdInputs` to the process's file descriptors 3, 4, … (then close them), and call `release()`
 * once it has exited. `spawnSandboxed` does all of that.
 */
export interface SandboxedSpawn {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** What the process reads on file descriptors 3, 4, …: options that must not show in any command line. */
  fdInputs?: Buffer[];
  /** Removes what was set up for this process (its resource limits); idempotent, call once the process has exited. */
  release(): void;
}

/** Puts a task's processes into the task's sandbox. */
export interface ProcessSandbox {
  /** What processes get: bubblewrap isolation, or none at all. */
  readonly kind: 'bwrap' | 'none';
  /** The path under which the task's processes see its workspace (`/workspace` inside bubblewrap). */
  workspacePath(workspaceDir: string): string;
  /** Whether a process sees the host path `path` (with `readOnlyPaths` shown too); absent without a sandbox, where it sees everything. */
  shows?(path: string, readOnlyPaths?: readonly string[]): boolean;
  /** Wraps one process; rejects when its sandbox cannot be set up. */
  prepare(request: SandboxRequest): Promise<SandboxedSpawn>;
}

/** No isolation: the process runs as it is, on the host, in the workspace directory. */
export class Unsandboxed implements ProcessSandbox {
  readonly kind = 'none';

  workspacePath(workspaceDir: string): string {
    return workspaceDir;
  }

  async prepare(request: SandboxRequest): Promise<SandboxedSpawn> {
    return { command: request.command, args: request.args, env: request.env, cwd: request.cwd, release: () => {} };
  }
}
