import type { CallToolResult } from '@modelcontextprotocol/server';

import { PathRefusedError } from './paths.js';

/** A tool failure the model should read; `guard` turns it into an `isError` result with this message. */
export class ToolFailure extends Error {
  override readonly name = 'ToolFailure';
}

/** A successful text result. */
export function textResult(text: string): CallToolResult {
  return { content: [{ type: 'text', text }] };
}

/** A failed text result (`isError: true`): input for the model, not a protocol error. */
export function errorResult(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

/**
 * Runs a tool body so that nothing escapes it: refusals and failures become `isError` results
 * with their message, and unexpected exceptions too (prefixed with the tool name), so bad input
 * can never crash the server or turn into a JSON-RPC error.
 */
export async function guard(toolName: string, body: () => Promise<CallToolResult>): Promise<CallToolResult> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof PathRefusedError || error instanceof ToolFailure) return errorResult(error.message);
    return errorResult(`${toolName} failed: ${describeError(error)}`);
  }
}

/** A short, model-readable description of a thrown value (errno codes kept: ENOENT, EISDIR, …). */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/**
 * Rewords a file-system error about `display` (the workspace-relative path) so the model sees
 * the cause without the host's absolute paths.
 */
export function fsFailure(error: unknown, display: string): ToolFailure {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return new ToolFailure(`${display}: no such file or directory.`);
    case 'ENOTDIR':
      return new ToolFailure(`${display}: a parent of this path is a file, not a directory.`);
    case 'EISDIR':
      return new ToolFailure(`${display} is a directory.`);
    case 'EACCES':
    case 'EPERM':
      return new ToolFailure(`${display}: permission denied.`);
    case 'EEXIST':
      return new ToolFailure(`${display} already exists.`);
    default:
      return new ToolFailure(`${display}: ${code ?? describeError(error)}.`);
  }
}

/** Formats a byte count for notes: `512 bytes`, `3.2 KiB`, `1.0 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
