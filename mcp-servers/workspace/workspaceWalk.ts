import type { Dirent } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';

/** Directories skipped by glob and search_file_content unless the pattern names them. */
export const IGNORED_DIRECTORIES: readonly string[] = ['node_modules', '.git'];
/** Most directory entries one walk visits, so a huge tree cannot stall the server. */
export const MAX_WALK_ENTRIES = 200_000;

/** A file (or symlink) found by a walk. */
export interface WalkedFile {
  /** Absolute path. */
  absolute: string;
  /** Path relative to the walk's base, `/`-separated. */
  relative: string;
  /** Whether it is a symlink (never followed by the walk itself). */
  isSymlink: boolean;
}

/** How a walk ended. */
export interface WalkSummary {
  /** Whether it stopped at MAX_WALK_ENTRIES rather than at the end of the tree. */
  entryCapHit: boolean;
}

/**
 * Walks `base` depth-first in path order and yields its files and symlinks; it never follows
 * symlinked directories (no loops, no way out of the workspace) and skips IGNORED_DIRECTORIES
 * except those in `include`. `visit` returns false to stop early.
 */
export async function walkFiles(
  base: string,
  visit: (file: WalkedFile) => boolean | Promise<boolean>,
  include: ReadonlySet<string> = new Set(),
): Promise<WalkSummary> {
  // Depth-first, children pushed in reverse name order, so files come out in path order.
  const stack: Array<{ relative: string; kind: 'dir' | 'file' | 'symlink' }> = [{ relative: '', kind: 'dir' }];
  let visited = 0;
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (item.kind !== 'dir') {
      const goOn = await visit({ absolute: path.join(base, item.relative), relative: item.relative, isSymlink: item.kind === 'symlink' });
      if (!goOn) return { entryCapHit: false };
      continue;
    }
    let dirents: Dirent[];
    try {
      dirents = await readdir(path.join(base, item.relative), { withFileTypes: true });
    } catch {
      continue; // unreadable or vanished: not the model's problem
    }
    visited += dirents.length;
    if (visited > MAX_WALK_ENTRIES) return { entryCapHit: true };
    dirents.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
    for (const dirent of dirents) {
      const relative = item.relative === '' ? dirent.name : `${item.relative}/${dirent.name}`;
      if (dirent.isDirectory()) {
        if (!IGNORED_DIRECTORIES.includes(dirent.name) || include.has(dirent.name)) stack.push({ relative, kind: 'dir' });
      } else if (dirent.isSymbolicLink()) {
        stack.push({ relative, kind: 'symlink' });
      } else if (dirent.isFile()) {
        stack.push({ relative, kind: 'file' });
      }
    }
  }
  return { entryCapHit: false };
}

/** The ignored directory names a glob pattern mentions, so walking it does not skip them. */
export function ignoredDirectoriesNamedIn(pattern: string | undefined): Set<string> {
  return new Set(IGNORED_DIRECTORIES.filter((name) => pattern?.includes(name)));
}
