/**
 * The built-in workspace MCP server (stdio): file and shell tools confined to one directory.
 *
 *   node --import tsx mcp-servers/workspace/server.ts [workspaceDir]
 *
 * The workspace root is argv[2], or the current directory when it is omitted; the Airlock pool
 * spawns it per task in the task's sandbox, where the workspace is /workspace (argv[2] and cwd),
 * with an environment of the task's env and secrets plus HOME, PATH and the SDK's defaults
 * (nothing else of Airlock's), which is also what run_shell_command passes on. stdout carries the protocol;
 * diagnostics go to stderr. When stdin closes (the host went away) or on SIGTERM/SIGINT, running
 * commands are killed with their process groups and the server exits.
 */
import { serveStdio } from '@modelcontextprotocol/server/stdio';

import { WorkspacePaths } from './paths.js';
import { ShellRunner } from './shellRunner.js';
import { createWorkspaceServer } from './workspaceServer.js';

async function main(): Promise<void> {
  const rootArgument = process.argv[2] ?? process.cwd();
  let paths: WorkspacePaths;
  try {
    paths = await WorkspacePaths.open(rootArgument);
  } catch (error) {
    process.stderr.write(`airlock-workspace: cannot use workspace ${rootArgument}: ${(error as Error).message}\n`);
    process.exit(2);
  }
  // Relative paths in the server's own process (and the shell's default) mean the workspace.
  process.chdir(paths.root);

  const runner = new ShellRunner();
  let shuttingDown = false;
  const shutdown = (exitCode: number) => {
    runner.stopAll();
    if (shuttingDown) return;
    shuttingDown = true;
    void handle.close().finally(() => process.exit(exitCode));
    // Never hang on a stuck close: the host is gone either way.
    setTimeout(() => process.exit(exitCode), 1000).unref();
  };

  const handle = serveStdio(() => createWorkspaceServer(paths, runner), {
    onerror: (error) => process.stderr.write(`airlock-workspace: ${error.message}\n`),
  });
  process.stdin.once('end', () => shutdown(0));
  process.stdin.once('close', () => shutdown(0));
  process.once('SIGTERM', () => shutdown(0));
  process.once('SIGINT', () => shutdown(0));
  process.once('SIGHUP', () => shutdown(0));
  // Last resort for any other way out: no command may outlive the server.
  process.once('exit', () => runner.stopAll());
  process.on('unhandledRejection', (reason) => {
    process.stderr.write(`airlock-workspace: unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}\n`);
  });
}

await main();
