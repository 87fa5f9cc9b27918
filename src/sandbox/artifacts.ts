import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, realpath } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';
import { ServiceError } from '../errors.js';
import { fileType } from './mimeTypes.js';
import type { ArtifactCategory } from './mimeTypes.js';

/** One file of a workspace, as GET /tasks/:id/artifacts lists it. */
export interface Artifact {
  name: string;
  /** Relative to the workspace, `/`-separated. */
  path: string;
  size: number;
  mimeType: string;
  category: ArtifactCategory;
  modifiedAt: string;
}

/** An open workspace file, ready to stream. */
export interface ArtifactFile {
  handle: FileHandle;
  name: string;
  size: number;
  mimeType: string;
}

/** The most files one artifacts list returns; past it the list says `truncated`. */
export const MAX_LISTED_ARTIFACTS = 10_000;

// An empty tar (two zero blocks), gzipped: the archive of an empty or deleted workspace.
const EMPTY_TAR_GZ = gzipSync(Buffer.alloc(1024));

/**
 * Calls `visit` for every regular file below `root`, directory by directory, with its
 * `/`-separated path and lstat. Symlinks are neither followed nor reported, nor are sockets and FIFOs; files that
 * vanish during the walk are skipped. `visit` returning false stops the walk. A missing root is
 * an empty one.
 */
export async function walkFiles(root: string, visit: (path: string, stats: Stats) => boolean | void): Promise<void> {
  const pending = [''];
  while (pending.length) {
    const dir = pending.pop()!;
    let entries;
    try {
      entries = await readdir(join(root, dir), { withFileTypes: true });
    } catch (err) {
      if (gone(err)) continue;
      throw err;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const subdirs: string[] = [];
    for (const entry of entries) {
      const path = dir ? `${dir}/${entry.name}` : entry.name;
      if (entry.isDirectory()) subdirs.push(path);
      if (!entry.isFile()) continue;
      let stats;
      try {
        stats = await lstat(join(root, path));
      } catch (err) {
        if (gone(err)) continue;
        throw err;
      }
      if (stats.isFile() && visit(path, stats) === false) return;
    }
    // Reversed onto the stack, so that directories are walked in name order.
    pending.push(...subdirs.reverse());
  }
}

/** Every file of a workspace (at most MAX_LISTED_ARTIFACTS), sorted by path. */
export async function listArtifacts(root: string): Promise<{ files: Artifact[]; truncated: boolean }> {
  const files: Artifact[] = [];
  let truncated = false;
  await walkFiles(root, (path, stats) => {
    if (files.length === MAX_LISTED_ARTIFACTS) {
      truncated = true;
      return false;
    }
    const name = path.split('/').at(-1)!;
    files.push({ name, path, size: stats.size, ...fileType(name), modifiedAt: stats.mtime.toISOString() });
  });
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files, truncated };
}

/** Sum of the sizes of a workspace's regular files, in bytes. */
export async function workspaceBytes(root: string): Promise<number> {
  let bytes = 0;
  await walkFiles(root, (_path, stats) => {
    bytes += stats.size;
  });
  return bytes;
}

/**
 * Opens the file at `path` (relative to the workspace) for download. NOT_FOUND for a missing file,
 * for `..`, absolute paths and symlinks that lead outside the workspace (checked on the real path,
 * and again on the opened file), and for anything that is not a regular file; VALIDATION_ERROR for
 * a directory.
 */
export async function openArtifact(root: string, path: string): Promise<ArtifactFile> {
  const notFound = () => new ServiceError('NOT_FOUND', 'No such file in the task workspace');
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  if (path.includes('\0') || isAbsolute(path) || /^[A-Za-z]:/.test(path) || parts.includes('..')) throw notFound();
  let realRoot: string;
  let real: string;
  try {
    realRoot = await realpath(root);
    real = await realpath(join(root, ...parts));
  } catch (err) {
    if (gone(err) || (err as NodeJS.ErrnoException).code === 'ELOOP') throw notFound();
    throw err;
  }
  if (!inside(realRoot, real)) throw notFound();
  let handle: FileHandle;
  try {
    // O_NONBLOCK: a FIFO swapped in after the checks must not hang the request.
    handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (gone(err) || (err as NodeJS.ErrnoException).code === 'ELOOP') throw notFound();
    throw err;
  }
  try {
    const stats = await handle.stat();
    if (stats.isDirectory()) {
      throw new ServiceError('VALIDATION_ERROR', `"${parts.join('/') || '.'}" is a directory: download its files one by one, or the whole workspace from /artifacts/archive`, { details: [{ path: '/path', message: 'is a directory' }] });
    }
    if (!stats.isFile() || !inside(realRoot, await openedPath(handle, real))) throw notFound();
    const name = real.split(sep).at(-1)!;
    return { handle, name, size: stats.size, mimeType: fileType(name).mimeType };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * The whole workspace as a gzipped tar stream, paths relative to the workspace (as in the
 * artifacts list). Symlinks and special files are left out; nothing outside is followed.
 */
export async function archiveWorkspace(root: string): Promise<Readable> {
  let entries: string[];
  try {
    entries = (await readdir(root)).sort();
  } catch (err) {
    if (!gone(err)) throw err;
    entries = [];
  }
  if (!entries.length) return Readable.from([EMPTY_TAR_GZ]);
  const pack = tar.create({ gzip: true, cwd: root, portable: true, filter: (_path, stats) => 'isFile' in stats && (stats.isFile() || stats.isDirectory()) }, entries);
  return Readable.from(pack);
}

// What the kernel says the opened file is: a directory swapped for a symlink between the realpath
// and the open shows here. Without /proc, the realpath check stands alone.
async function openedPath(handle: FileHandle, fallback: string): Promise<string> {
  try {
    return await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    return fallback;
  }
}

function inside(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

function gone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  // A name past the file system's length limit names no file that could exist.
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG';
}
