import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';

import type { McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';

import type { WorkspacePaths } from './paths.js';
import { formatBytes, fsFailure, guard, textResult, ToolFailure } from './toolResults.js';

/** Most text read_file returns in one call. */
export const MAX_READ_BYTES = 256 * 1024;
/** Lines returned when the caller gives no limit. */
export const DEFAULT_READ_LINES = 2000;
/** Files up to this size are read to the end so the note can give the total line count. */
const COUNT_LINES_MAX_FILE_BYTES = 32 * 1024 * 1024;
/** A NUL byte in this many leading bytes marks a file as binary. */
const BINARY_SNIFF_BYTES = 8192;

const inputSchema = z.object({
  path: z.string().describe('File to read: relative to the workspace root, or absolute under /workspace.'),
  offset: z
    .number().int().min(0).optional()
    .describe('0-based line number to start at (default 0). Use it with limit to page through large files.'),
  limit: z
    .number().int().min(1).optional()
    .describe(`How many lines to return (default ${DEFAULT_READ_LINES}). Output is also capped at ${MAX_READ_BYTES / 1024} KiB.`),
});

/** Registers read_file. */
export function registerReadFileTool(server: McpServer, paths: WorkspacePaths): void {
  server.registerTool(
    'read_file',
    {
      title: 'Read file',
      description:
        'Reads a text file from the workspace and returns its content. Long files are returned a window at a ' +
        'time: a note at the top says which lines are shown and the offset to continue from. Binary files are ' +
        'not returned; a note gives their size and likely type instead.',
      inputSchema,
      annotations: { title: 'Read file', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (args) => guard('read_file', () => readFile(paths, args)),
  );
}

async function readFile(paths: WorkspacePaths, args: z.infer<typeof inputSchema>) {
  const target = await paths.resolve(args.path);
  const stats = await stat(target.absolute).catch((error: unknown) => {
    throw fsFailure(error, target.display);
  });
  if (stats.isDirectory()) throw new ToolFailure(`${target.display} is a directory; use list_directory or glob to see its contents.`);
  // Reading a FIFO or a device could block forever or never end.
  if (!stats.isFile()) throw new ToolFailure(`${target.display} is not a regular file.`);
  if (stats.size === 0) return textResult(`[read_file: ${target.display} is empty.]`);

  if (await looksBinary(target.absolute)) {
    return textResult(
      `[read_file: ${target.display} is a binary file (${formatBytes(stats.size)}, probably ${guessMimeType(target.absolute)}); ` +
        'its content is not shown as text. Use run_shell_command (e.g. file, xxd, unzip -l) to inspect it.]',
    );
  }

  const offset = args.offset ?? 0;
  const limit = args.limit ?? DEFAULT_READ_LINES;
  const window = await readLines(target.absolute, offset, limit, stats.size <= COUNT_LINES_MAX_FILE_BYTES);
  if (window.lines.length === 0) {
    throw new ToolFailure(`offset ${offset} is past the end of ${target.display}, which has ${window.linesSeen} line${window.linesSeen === 1 ? '' : 's'}.`);
  }
  const shownEnd = offset + window.lines.length;
  const complete = offset === 0 && window.reachedEnd && window.linesSeen === shownEnd && !window.lineCut;
  if (complete) return textResult(window.lines.join('\n'));

  const total = window.reachedEnd ? ` of ${window.linesSeen}` : ` (the file has more; ${formatBytes(stats.size)} in all)`;
  const why = window.lineCut ? `line ${shownEnd} is longer than ${MAX_READ_BYTES / 1024} KiB and was cut` : window.stoppedBy === 'bytes' ? `output is capped at ${MAX_READ_BYTES / 1024} KiB` : undefined;
  const more = window.reachedEnd && window.linesSeen === shownEnd ? '' : ` To read more, call read_file with offset=${shownEnd}.`;
  const note = `[read_file: showing lines ${offset + 1}-${shownEnd}${total} in ${target.display}${why ? `; ${why}` : ''}.${more}]`;
  return textResult(`${note}\n${window.lines.join('\n')}`);
}

interface LineWindow {
  /** The lines returned, without their line breaks. */
  lines: string[];
  /** Lines read from the start of the file (all of them when reachedEnd). */
  linesSeen: number;
  /** Whether the whole file was read. */
  reachedEnd: boolean;
  /** What ended the window: the end of the file, the line limit or the byte cap. */
  stoppedBy: 'end' | 'limit' | 'bytes';
  /** Whether the last line returned was cut at the byte cap. */
  lineCut: boolean;
}

async function readLines(file: string, offset: number, limit: number, countAll: boolean): Promise<LineWindow> {
  const stream = createReadStream(file, { encoding: 'utf8' });
  const reader = createInterface({ input: stream, crlfDelay: Infinity });
  const lines: string[] = [];
  let bytes = 0;
  let lineNumber = 0;
  let stoppedBy: LineWindow['stoppedBy'] = 'end';
  let lineCut = false;
  let reachedEnd = true;
  try {
    for await (const line of reader) {
      lineNumber += 1;
      if (lineNumber <= offset || stoppedBy !== 'end') {
        if (stoppedBy !== 'end' && !countAll) {
          reachedEnd = false;
          break;
        }
        continue;
      }
      const lineBytes = Buffer.byteLength(line) + 1;
      if (bytes + lineBytes > MAX_READ_BYTES) {
        if (lines.length === 0) {
          lines.push(Buffer.from(line).subarray(0, MAX_READ_BYTES).toString('utf8'));
          lineCut = true;
        }
        stoppedBy = 'bytes';
        continue;
      }
      lines.push(line);
      bytes += lineBytes;
      if (lines.length >= limit) stoppedBy = 'limit';
    }
  } finally {
    reader.close();
    stream.destroy();
  }
  return { lines, linesSeen: lineNumber, reachedEnd, stoppedBy, lineCut };
}

async function looksBinary(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(BINARY_SNIFF_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, BINARY_SNIFF_BYTES, 0);
    return buffer.subarray(0, bytesRead).includes(0);
  } finally {
    await handle.close();
  }
}

const MIME_BY_EXTENSION: Record<string, string> = {
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp',
  '.bmp': 'image/bmp', '.ico': 'image/x-icon', '.tif': 'image/tiff', '.tiff': 'image/tiff',
  '.pdf': 'application/pdf', '.zip': 'application/zip', '.gz': 'application/gzip', '.tgz': 'application/gzip',
  '.tar': 'application/x-tar', '.bz2': 'application/x-bzip2', '.xz': 'application/x-xz', '.7z': 'application/x-7z-compressed',
  '.jar': 'application/java-archive', '.class': 'application/java-vm', '.wasm': 'application/wasm',
  '.mp3': 'audio/mpeg', '.wav': 'audio/wav', '.ogg': 'audio/ogg', '.mp4': 'video/mp4', '.webm': 'video/webm', '.mov': 'video/quicktime',
  '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf', '.otf': 'font/otf',
  '.sqlite': 'application/vnd.sqlite3', '.db': 'application/vnd.sqlite3',
  '.xlsx': 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  '.docx': 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
};

/** A MIME type guessed from the file name; `application/octet-stream` when unknown. */
export function guessMimeType(file: string): string {
  return MIME_BY_EXTENSION[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}
