import { stat } from 'node:fs/promises';

import type { CallToolResult, McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';

import type { WorkspacePaths } from './paths.js';
import { MAX_OUTPUT_BYTES, type ShellRunner, type ShellRunResult } from './shellRunner.js';
import { fsFailure, guard, ToolFailure } from './toolResults.js';

/** Timeout when the caller gives none. */
export const DEFAULT_SHELL_TIMEOUT_MS = 120_000;
/** Longest timeout a caller may ask for. */
export const MAX_SHELL_TIMEOUT_MS = 600_000;

const inputSchema = z.object({
  command: z.string().min(1).describe('The command line to run, e.g. "npm test" or "ls -la src && git status". Runs with bash -c (sh when bash is missing).'),
  timeoutMs: z
    .number().int().min(1).max(MAX_SHELL_TIMEOUT_MS).optional()
    .describe(`Stop the command after this many milliseconds (default ${DEFAULT_SHELL_TIMEOUT_MS}, at most ${MAX_SHELL_TIMEOUT_MS}).`),
  cwd: z
    .string().optional()
    .describe('Directory to run in, relative to the workspace root (or under /workspace); default the root.'),
});

const outputSchema = z.object({
  exitCode: z.number().int().nullable().describe('Exit status; null when the command was ended by a signal or did not start.'),
  signal: z.string().nullable().describe('The signal that ended the command, if any.'),
  timedOut: z.boolean().describe('Whether the command was stopped for running past timeoutMs.'),
  cancelled: z.boolean().describe('Whether the command was stopped because the call was cancelled.'),
  stdout: z.string().describe('Standard output; the middle is replaced by a note when it exceeded the cap.'),
  stderr: z.string().describe('Standard error; the middle is replaced by a note when it exceeded the cap.'),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  durationMs: z.number().int(),
});

/** Registers run_shell_command. */
export function registerShellTool(server: McpServer, paths: WorkspacePaths, runner: ShellRunner): void {
  server.registerTool(
    'run_shell_command',
    {
      title: 'Run shell command',
      description:
        'Runs a shell command in the workspace and returns its exit code, stdout and stderr. The command gets the ' +
        "task's environment variables, no stdin, and a timeout (default 2 minutes); on timeout it is stopped with " +
        `SIGTERM, then SIGKILL. Each of stdout and stderr is capped at ${MAX_OUTPUT_BYTES / (1024 * 1024)} MiB (beginning and ` +
        'end kept). Background jobs (&) are stopped when the command finishes, so start and use a server in one command. ' +
        'A non-zero exit code or a timeout is reported as an error.',
      inputSchema,
      outputSchema,
      annotations: { title: 'Run shell command', readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    },
    (args, ctx) => guard('run_shell_command', () => runShellCommand(paths, runner, args, ctx.mcpReq.signal)),
  );
}

async function runShellCommand(
  paths: WorkspacePaths,
  runner: ShellRunner,
  args: z.infer<typeof inputSchema>,
  signal: AbortSignal,
): Promise<CallToolResult> {
  const cwd = await paths.resolve(args.cwd ?? '.');
  const cwdStats = await stat(cwd.absolute).catch((error: unknown) => {
    throw fsFailure(error, cwd.display);
  });
  if (!cwdStats.isDirectory()) throw new ToolFailure(`cwd ${cwd.display} is not a directory.`);
  const timeoutMs = args.timeoutMs ?? DEFAULT_SHELL_TIMEOUT_MS;
  const result = await runner.run({ command: args.command, cwd: cwd.absolute, timeoutMs, signal });
  if (result.startError !== undefined) throw new ToolFailure(`The command could not be started: ${result.startError}`);
  const failed = result.exitCode !== 0 || result.timedOut || result.cancelled;
  const { startError: _unused, ...structured } = result;
  return {
    content: [{ type: 'text', text: formatResult(result, timeoutMs, cwd.display) }],
    structuredContent: structured,
    ...(failed ? { isError: true } : {}),
  };
}

function formatResult(result: ShellRunResult, timeoutMs: number, cwd: string): string {
  const lines: string[] = [];
  if (result.timedOut) lines.push(`Timed out after ${timeoutMs} ms; the command and its child processes were stopped.`);
  if (result.cancelled) lines.push('Cancelled; the command and its child processes were stopped.');
  lines.push(result.exitCode !== null ? `Exit code: ${result.exitCode}` : `Exit code: none (ended by ${result.signal ?? 'a signal'})`);
  if (cwd !== '.') lines.push(`Directory: ${cwd}`);
  lines.push(`Stdout:${streamText(result.stdout, result.stdoutTruncated)}`);
  lines.push(`Stderr:${streamText(result.stderr, result.stderrTruncated)}`);
  return lines.join('\n');
}

function streamText(text: string, truncated: boolean): string {
  if (text === '') return ' (empty)';
  return `${truncated ? ' (truncated)' : ''}\n${text.replace(/\n$/, '')}`;
}
