import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';

import type { WorkspacePaths } from './paths.js';
import { formatBytes, fsFailure, guard, textResult, ToolFailure } from './toolResults.js';

/** Most entries list_directory shows. */
export const MAX_LIST_ENTRIES = 1000;

const pathDescription = 'relative to the workspace root, or absolute under /workspace';

const writeFileInput = z.object({
  path: z.string().describe(`File to write (${pathDescription}). Missing parent directories are created.`),
  content: z.string().describe('The complete new content of the file (UTF-8). An existing file is replaced entirely.'),
});

const replaceInput = z.object({
  path: z.string().describe(`File to edit (${pathDescription}).`),
  old_string: z
    .string().min(1)
    .describe('The exact text to replace, including whitespace and indentation. Include enough surrounding lines to make it unique.'),
  new_string: z.string().describe('The text to put in its place.'),
  expected_replacements: z
    .number().int().min(1).optional()
    .describe('How many occurrences of old_string the file must contain (default 1). All of them are replaced; if the count differs, nothing is written.'),
});

const listDirectoryInput = z.object({
  path: z.string().optional().describe(`Directory to list (${pathDescription}); default "." (the workspace root).`),
});

/** Registers write_file, replace and list_directory. */
export function registerFileTools(server: McpServer, paths: WorkspacePaths): void {
  server.registerTool(
    'write_file',
    {
      title: 'Write file',
      description: 'Writes a text file in the workspace, creating it (and its parent directories) or overwriting it entirely.',
      inputSchema: writeFileInput,
      annotations: { title: 'Write file', readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    (args) => guard('write_file', () => writeWorkspaceFile(paths, args)),
  );
  server.registerTool(
    'replace',
    {
      title: 'Replace text in file',
      description:
        'Replaces exact text in a workspace file: every occurrence of old_string becomes new_string, provided the ' +
        'file contains exactly expected_replacements occurrences (default 1). Otherwise the file is left unchanged ' +
        'and the error says how many were found. Read the file first so old_string matches it character for character.',
      inputSchema: replaceInput,
      annotations: { title: 'Replace text in file', readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    },
    (args) => guard('replace', () => replaceInFile(paths, args)),
  );
  server.registerTool(
    'list_directory',
    {
      title: 'List directory',
      description:
        'Lists a workspace directory: one entry per line with its type (dir, file or symlink), name, and size for ' +
        'files or target for symlinks. Directories come first, then files, each sorted by name.',
      inputSchema: listDirectoryInput,
      annotations: { title: 'List directory', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (args) => guard('list_directory', () => listDirectory(paths, args)),
  );
}

async function writeWorkspaceFile(paths: WorkspacePaths, args: z.infer<typeof writeFileInput>) {
  const target = await paths.resolve(args.path);
  const existing = await stat(target.absolute).catch(() => undefined);
  if (existing?.isDirectory()) throw new ToolFailure(`${target.display} is a directory; give a file path to write.`);
  try {
    await mkdir(path.dirname(target.absolute), { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // mkdir -p reports EEXIST when a parent is a file.
    throw code === 'EEXIST' ? new ToolFailure(`${target.display}: a parent of this path is a file, not a directory.`) : fsFailure(error, target.display);
  }
  try {
    await writeFile(target.absolute, args.content, 'utf8');
  } catch (error) {
    throw fsFailure(error, target.display);
  }
  const bytes = Buffer.byteLength(args.content);
  return textResult(`${existing ? 'Overwrote' : 'Created'} ${target.display} (${formatBytes(bytes)}).`);
}

async function replaceInFile(paths: WorkspacePaths, args: z.infer<typeof replaceInput>) {
  const target = await paths.resolve(args.path);
  const expected = args.expected_replacements ?? 1;
  let content: string;
  try {
    content = await readFile(target.absolute, 'utf8');
  } catch (error) {
    throw fsFailure(error, target.display);
  }
  // Decoding and re-encoding would corrupt a binary file's other bytes.
  if (content.includes('\0')) throw new ToolFailure(`${target.display} is a binary file; replace edits text files only.`);
  if (args.old_string === args.new_string) {
    throw new ToolFailure(`old_string and new_string are identical; ${target.display} was not changed.`);
  }
  // split/join, not String.replace: new_string must not be read as a `$&` replacement pattern.
  const parts = content.split(args.old_string);
  const found = parts.length - 1;
  if (found !== expected) {
    const hint =
      found === 0
        ? 'Read the file again and copy old_string exactly, including whitespace and indentation.'
        : found > expected
          ? `Add surrounding context to old_string to single out the occurrence you mean, or set expected_replacements to ${found} to replace them all.`
          : `Set expected_replacements to ${found} if that is what you meant.`;
    throw new ToolFailure(
      `Expected ${plural(expected, 'occurrence')} of old_string in ${target.display} but found ${found}; the file was not changed. ${hint}`,
    );
  }
  try {
    await writeFile(target.absolute, parts.join(args.new_string), 'utf8');
  } catch (error) {
    throw fsFailure(error, target.display);
  }
  return textResult(`Replaced ${plural(found, 'occurrence')} in ${target.display}.`);
}

type EntryType = 'dir' | 'file' | 'symlink' | 'other';

interface ListedEntry {
  name: string;
  type: EntryType;
  /** Size in bytes, for files. */
  size?: number;
  /** Link target as stored, for symlinks. */
  target?: string;
}

async function listDirectory(paths: WorkspacePaths, args: z.infer<typeof listDirectoryInput>) {
  const target = await paths.resolve(args.path ?? '.');
  const stats = await stat(target.absolute).catch((error: unknown) => {
    throw fsFailure(error, target.display);
  });
  if (!stats.isDirectory()) throw new ToolFailure(`${target.display} is not a directory; use read_file to read a file.`);
  const dirents = await readdir(target.absolute, { withFileTypes: true });
  const entries: ListedEntry[] = await Promise.all(
    dirents.map(async (dirent): Promise<ListedEntry> => {
      const full = path.join(target.absolute, dirent.name);
      if (dirent.isSymbolicLink()) return { name: dirent.name, type: 'symlink', target: await readlink(full).catch(() => '?') };
      if (dirent.isDirectory()) return { name: dirent.name, type: 'dir' };
      if (dirent.isFile()) return { name: dirent.name, type: 'file', size: (await lstat(full).catch(() => undefined))?.size ?? 0 };
      return { name: dirent.name, type: 'other' };
    }),
  );
  entries.sort((a, b) => typeRank(a.type) - typeRank(b.type) || compareNames(a.name, b.name));
  if (entries.length === 0) return textResult(`Directory ${target.display} is empty.`);

  const shown = entries.slice(0, MAX_LIST_ENTRIES);
  const lines = shown.map(formatEntry);
  const header = `Directory ${target.display} (${plural(entries.length, 'entry', 'entries')}):`;
  const footer = entries.length > shown.length ? [`[${entries.length - shown.length} more entries not shown; use glob to narrow down.]`] : [];
  return textResult([header, ...lines, ...footer].join('\n'));
}

function formatEntry(entry: ListedEntry): string {
  const label = `[${entry.type}]`.padEnd(10);
  switch (entry.type) {
    case 'dir':
      return `${label}${entry.name}/`;
    case 'file':
      return `${label}${entry.name} (${formatBytes(entry.size ?? 0)})`;
    case 'symlink':
      return `${label}${entry.name} -> ${entry.target ?? '?'}`;
    case 'other':
      return `${label}${entry.name}`;
  }
}

function typeRank(type: EntryType): number {
  return type === 'dir' ? 0 : 1;
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}
