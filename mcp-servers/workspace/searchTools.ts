import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';

import type { McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';

import { compileGlob } from './globPattern.js';
import { MatchBudget, MatchTimeLimit, SEARCH_TIME_LIMIT_MS } from './matchBudget.js';
import { WORKSPACE_ALIAS, type WorkspacePath, type WorkspacePaths } from './paths.js';
import { fsFailure, guard, textResult, ToolFailure } from './toolResults.js';
import { ignoredDirectoriesNamedIn, IGNORED_DIRECTORIES, walkFiles, type WalkedFile } from './workspaceWalk.js';

/** Most paths glob returns. */
export const MAX_GLOB_RESULTS = 1000;
/** Most matching lines search_file_content returns. */
export const MAX_SEARCH_MATCHES = 500;
/** Files larger than this are skipped by search_file_content. */
export const MAX_SEARCH_FILE_BYTES = 8 * 1024 * 1024;
/** Longest line text shown in a search result. */
const MAX_MATCH_LINE_CHARS = 300;

const ignoredNote = `${IGNORED_DIRECTORIES.join(' and ')} directories are skipped unless the pattern names them`;

const globInput = z.object({
  pattern: z
    .string().min(1)
    .describe('Glob pattern relative to path, e.g. "**/*.ts", "src/*.{js,json}", "docs/**". Supports *, **, ?, {a,b} and [abc].'),
  path: z.string().optional().describe('Directory to search from (relative to the workspace root, or under /workspace); default the root.'),
});

const searchInput = z.object({
  pattern: z
    .string().min(1)
    .describe(`JavaScript regular expression to look for in each line, e.g. "function\\s+main" (case-sensitive). A search stops with an error after ${SEARCH_TIME_LIMIT_MS / 1000} s of matching.`),
  path: z.string().optional().describe('Directory (or single file) to search; relative to the workspace root, or under /workspace. Default the root.'),
  include: z
    .string().optional()
    .describe('Glob limiting which files are searched, e.g. "*.ts" or "src/**/*.{ts,tsx}". Without a "/" it matches file names at any depth.'),
});

/** Registers glob and search_file_content. */
export function registerSearchTools(server: McpServer, paths: WorkspacePaths): void {
  server.registerTool(
    'glob',
    {
      title: 'Find files by glob',
      description:
        `Finds files whose path matches a glob pattern and returns their paths relative to the workspace root in path order, one per line ` +
        `(at most ${MAX_GLOB_RESULTS}). Directories themselves are not listed; ${ignoredNote}.`,
      inputSchema: globInput,
      annotations: { title: 'Find files by glob', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (args) => guard('glob', () => globFiles(paths, args)),
  );
  server.registerTool(
    'search_file_content',
    {
      title: 'Search file contents',
      description:
        `Searches text files for lines matching a regular expression and returns them as "path:line: text" ` +
        `(paths relative to the workspace root, at most ${MAX_SEARCH_MATCHES} lines). Binary files and files over ` +
        `${MAX_SEARCH_FILE_BYTES / (1024 * 1024)} MiB are skipped; ${ignoredNote}. Matching may take ${SEARCH_TIME_LIMIT_MS / 1000} s in all; ` +
        `past that the search ends with an error (an expression that backtracks, such as (a+)+$, can take longer than that on one line).`,
      inputSchema: searchInput,
      annotations: { title: 'Search file contents', readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    (args) => guard('search_file_content', () => searchFileContent(paths, args)),
  );
}

async function globFiles(paths: WorkspacePaths, args: z.infer<typeof globInput>) {
  let pattern = args.pattern;
  // A model that sees the workspace as /workspace may spell the pattern that way.
  if (args.path === undefined && pattern.startsWith(`${WORKSPACE_ALIAS}/`)) pattern = pattern.slice(WORKSPACE_ALIAS.length + 1);
  if (pattern.startsWith('/')) throw new ToolFailure(`Glob pattern ${JSON.stringify(args.pattern)} must be relative; use path to choose the directory to search from.`);
  const base = await resolveDirectory(paths, args.path ?? '.');
  const matches = compileGlob(pattern);
  const found: string[] = [];
  let more = false;
  const summary = await walkFiles(
    base.absolute,
    (file) => {
      if (!matches(file.relative)) return true;
      if (found.length >= MAX_GLOB_RESULTS) {
        more = true;
        return false;
      }
      found.push(paths.display(file.absolute));
      return true;
    },
    ignoredDirectoriesNamedIn(pattern),
  );
  if (found.length === 0) return textResult(`No files match ${JSON.stringify(pattern)} in ${base.display}.${walkNote(summary.entryCapHit)}`);
  const header = more
    ? `Found more than ${MAX_GLOB_RESULTS} files matching ${JSON.stringify(pattern)} in ${base.display}; showing the first ${MAX_GLOB_RESULTS} (narrow the pattern to see the rest):`
    : `Found ${found.length} file${found.length === 1 ? '' : 's'} matching ${JSON.stringify(pattern)} in ${base.display}:`;
  return textResult(`${header}\n${found.join('\n')}${walkNote(summary.entryCapHit)}`);
}

async function searchFileContent(paths: WorkspacePaths, args: z.infer<typeof searchInput>) {
  let regex: RegExp;
  try {
    regex = new RegExp(args.pattern);
  } catch (error) {
    throw new ToolFailure(`Invalid regular expression ${JSON.stringify(args.pattern)}: ${(error as Error).message}`);
  }
  const target = await paths.resolve(args.path ?? '.');
  const targetStats = await stat(target.absolute).catch((error: unknown) => {
    throw fsFailure(error, target.display);
  });
  const include = args.include === undefined ? undefined : compileGlob(args.include);
  const includeMatchesName = args.include !== undefined && !args.include.includes('/');
  const matches: string[] = [];
  let filesSearched = 0;
  let capped = false;
  const budget = new MatchBudget();

  const searchOne = async (file: WalkedFile): Promise<boolean> => {
    if (include && !include(includeMatchesName ? path.posix.basename(file.relative) : file.relative)) return true;
    const content = await readSearchable(paths, file);
    if (content === undefined) return true;
    filesSearched += 1;
    const display = paths.display(file.absolute);
    const lines = content.split(/\r?\n/);
    // One more than there is room for, so that a full result says there were more.
    const room = MAX_SEARCH_MATCHES - matches.length + 1;
    let found: number[];
    try {
      found = budget.run(() => matchingLines(lines, regex, room));
    } catch (error) {
      if (error instanceof MatchTimeLimit) throw timeLimitFailure(args.pattern, display, error.limitMs);
      throw error;
    }
    for (const index of found) {
      if (matches.length >= MAX_SEARCH_MATCHES) {
        capped = true;
        return false;
      }
      const line = lines[index]!;
      const text = line.length > MAX_MATCH_LINE_CHARS ? `${line.slice(0, MAX_MATCH_LINE_CHARS)}…` : line;
      matches.push(`${display}:${index + 1}: ${text}`);
    }
    return true;
  };

  let entryCapHit = false;
  if (targetStats.isDirectory()) {
    ({ entryCapHit } = await walkFiles(target.absolute, searchOne, ignoredDirectoriesNamedIn(args.include)));
  } else {
    await searchOne({ absolute: target.absolute, relative: path.basename(target.absolute), isSymlink: false });
  }

  const where = `in ${target.display}${args.include ? ` (files matching ${JSON.stringify(args.include)})` : ''}`;
  if (matches.length === 0) {
    return textResult(`No matches for /${args.pattern}/ ${where}; ${filesSearched} file${filesSearched === 1 ? '' : 's'} searched.${walkNote(entryCapHit)}`);
  }
  const header = capped
    ? `Found more than ${MAX_SEARCH_MATCHES} matches for /${args.pattern}/ ${where}; showing the first ${MAX_SEARCH_MATCHES} (narrow the pattern, path or include to see the rest):`
    : `Found ${matches.length} match${matches.length === 1 ? '' : 'es'} for /${args.pattern}/ ${where}:`;
  return textResult(`${header}\n${matches.join('\n')}${walkNote(entryCapHit)}`);
}

/** The indexes of the lines `regex` matches, at most `limit` of them. */
function matchingLines(lines: string[], regex: RegExp, limit: number): number[] {
  const found: number[] = [];
  for (let index = 0; index < lines.length && found.length < limit; index += 1) {
    if (regex.test(lines[index]!)) found.push(index);
  }
  return found;
}

function timeLimitFailure(pattern: string, display: string, limitMs: number): ToolFailure {
  return new ToolFailure(
    `search_file_content stopped: matching /${pattern}/ took more than its time limit of ${limitMs / 1000} s (reached in ${display}). ` +
      'The expression probably backtracks catastrophically (nested quantifiers such as (a+)+ or (.*a){20}); simplify it, or narrow path or include.',
  );
}

/** The text of a file worth searching; undefined for symlinks leaving the workspace, binaries and huge files. */
async function readSearchable(paths: WorkspacePaths, file: WalkedFile): Promise<string | undefined> {
  try {
    if (file.isSymlink && !paths.containsReal(await realpath(file.absolute))) return undefined;
    const stats = await stat(file.absolute);
    if (!stats.isFile() || stats.size > MAX_SEARCH_FILE_BYTES) return undefined;
    const buffer = await readFile(file.absolute);
    if (buffer.subarray(0, 8192).includes(0)) return undefined;
    return buffer.toString('utf8');
  } catch {
    return undefined;
  }
}

async function resolveDirectory(paths: WorkspacePaths, input: string): Promise<WorkspacePath> {
  const target = await paths.resolve(input);
  const stats = await stat(target.absolute).catch((error: unknown) => {
    throw fsFailure(error, target.display);
  });
  if (!stats.isDirectory()) throw new ToolFailure(`${target.display} is not a directory.`);
  return target;
}

function walkNote(entryCapHit: boolean): string {
  return entryCapHit ? `\n[The search stopped after visiting its limit of directory entries; use path to search a smaller directory.]` : '';
}
