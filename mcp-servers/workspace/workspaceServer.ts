import { McpServer } from '@modelcontextprotocol/server';

import { registerFileTools } from './fileTools.js';
import type { WorkspacePaths } from './paths.js';
import { registerReadFileTool } from './readFileTool.js';
import { registerSearchTools } from './searchTools.js';
import type { ShellRunner } from './shellRunner.js';
import { registerShellTool } from './shellTool.js';

/** The name this server reports in its implementation info. */
export const WORKSPACE_SERVER_NAME = 'airlock-workspace';
/** The version this server reports. */
export const WORKSPACE_SERVER_VERSION = '0.1.0';

/** The tool names, in registration order; the runtime shows them to the model unprefixed. */
export const WORKSPACE_TOOL_NAMES = [
  'read_file',
  'write_file',
  'list_directory',
  'glob',
  'search_file_content',
  'replace',
  'run_shell_command',
] as const;

const INSTRUCTIONS =
  'File and shell tools for this task\'s workspace, which processes see as /workspace. Paths are relative to the ' +
  'workspace root or absolute under /workspace; nothing outside it can be read or written. Inputs are in uploads/, ' +
  'deliverables go in downloads/.';

/**
 * Builds one MCP server instance with the seven workspace tools. The paths and the shell runner
 * are shared, so every instance (one per connection era) works on the same workspace and the
 * same set of running commands.
 */
export function createWorkspaceServer(paths: WorkspacePaths, runner: ShellRunner): McpServer {
  const server = new McpServer(
    { name: WORKSPACE_SERVER_NAME, version: WORKSPACE_SERVER_VERSION },
    { capabilities: { tools: { listChanged: false } }, instructions: INSTRUCTIONS },
  );
  registerReadFileTool(server, paths);
  registerFileTools(server, paths);
  registerSearchTools(server, paths);
  registerShellTool(server, paths, runner);
  return server;
}
