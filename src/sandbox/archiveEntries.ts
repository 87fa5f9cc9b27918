import { mkdir, open } from 'node:fs/promises';
import { dirname, relative, resolve, sep } from 'node:path';
import type { ArchiveLimits } from '../config.js';
import { ServiceError } from '../errors.js';
import { safeComponent } from './safeNames.js';

/** Below this many expanded bytes the ratio is not checked: small archives of repetitive text are no bomb. */
const RATIO_GRACE_BYTES = 1024 * 1024;

/** Which archive is being extracted, for messages: its saved name and the request field it came in. */
export interface ArchiveLabel {
  name: string;
  /** JSON pointer of the upload in the request, e.g. `/files/2`. */
  pointer: string;
}

/** What an entry is, as far as extraction cares. */
export type EntryKind = 'file' | 'directory' | 'link' | 'special' | 'unsupported';

/**
 * Counts what an archive actually expands to, entry by entry and byte by byte as it is written
 * (sizes in headers are not trusted), and refuses it with PAYLOAD_TOO_LARGE past its limits.
 */
export class ExtractionBudget {
  private entries = 0;
  private bytes = 0;

  constructor(private readonly limits: ArchiveLimits, private readonly archiveBytes: number, private readonly label: ArchiveLabel) {}

  countEntry(): void {
    if (++this.entries > this.limits.maxEntries) throw this.tooLarge(`has more than ${this.limits.maxEntries} entries`);
  }

  countBytes(count: number): void {
    this.bytes += count;
    if (this.bytes > this.limits.maxExpandedBytes) throw this.tooLarge(`expands to more than ${this.limits.maxExpandedBytes} bytes`);
    if (this.bytes > RATIO_GRACE_BYTES && this.bytes > this.archiveBytes * this.limits.maxCompressionRatio) {
      throw this.tooLarge(`expands to more than ${this.limits.maxCompressionRatio} times its own size`);
    }
  }

  private tooLarge(why: string): ServiceError {
    return new ServiceError('PAYLOAD_TOO_LARGE', `Archive "${this.label.name}" ${why}; nothing was saved`, { details: [{ path: this.label.pointer, message: `archive ${why}` }] });
  }
}

/** VALIDATION_ERROR for an archive that cannot be extracted safely or at all. */
export function refuseArchive(label: ArchiveLabel, why: string): ServiceError {
  return new ServiceError('VALIDATION_ERROR', `Archive "${label.name}" was refused: ${why}; nothing was saved`, { details: [{ path: label.pointer, message: why }] });
}

/**
 * Where an entry goes below `dest`, or undefined for an entry that names the root itself (`./`).
 * Refuses absolute names, `..` components, NUL bytes, links and special files; every component
 * passes through safeComponent, so control characters never reach the file system.
 */
export function entryTarget(dest: string, rawName: string, kind: EntryKind, label: ArchiveLabel): string | undefined {
  const shown = JSON.stringify(rawName.length > 200 ? `${rawName.slice(0, 200)}…` : rawName);
  if (kind === 'link') throw refuseArchive(label, `entry ${shown} is a link (links are not accepted in uploads)`);
  if (kind === 'special') throw refuseArchive(label, `entry ${shown} is a device file, FIFO or socket`);
  if (kind === 'unsupported') throw refuseArchive(label, `entry ${shown} has a type Airlock does not extract`);
  if (rawName.includes('\0')) throw refuseArchive(label, `entry ${shown} has a NUL byte in its name`);
  if (rawName.startsWith('/') || /^[A-Za-z]:/.test(rawName)) throw refuseArchive(label, `entry ${shown} has an absolute path`);
  const parts = rawName.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw refuseArchive(label, `entry ${shown} climbs out of the archive with ".."`);
  if (!parts.length) return undefined;
  const target = resolve(dest, ...parts.map((part) => safeComponent(part, '_')));
  // Defence in depth: the checks above already keep every target inside.
  const rel = relative(dest, target);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..') throw refuseArchive(label, `entry ${shown} leaves the archive's directory`);
  return target;
}

/**
 * Creates a directory entry. Everything below `dest` was made by this extraction, so there is no
 * symlink on the way to follow.
 */
export async function writeEntryDirectory(target: string, rawName: string, label: ArchiveLabel): Promise<void> {
  try {
    await mkdir(target, { recursive: true });
  } catch (err) {
    throw clash(err, rawName, label);
  }
}

/**
 * Writes a file entry, counting every byte against the budget. The file must not exist yet
 * (`wx`): an archive naming the same file twice is refused. `content` is opened only once the
 * file is ready for it, so that a stream never errors before anyone listens.
 */
export async function writeEntryFile(target: string, rawName: string, content: () => Promise<AsyncIterable<Buffer>>, budget: ExtractionBudget, executable: boolean, label: ArchiveLabel): Promise<void> {
  let handle;
  try {
    await mkdir(dirname(target), { recursive: true });
    handle = await open(target, 'wx', executable ? 0o755 : 0o644);
  } catch (err) {
    throw clash(err, rawName, label);
  }
  try {
    for await (const chunk of await content()) {
      budget.countBytes(chunk.length);
      await handle.write(chunk);
    }
  } finally {
    await handle.close();
  }
}

function clash(err: unknown, rawName: string, label: ArchiveLabel): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') return refuseArchive(label, `entry ${JSON.stringify(rawName)} clashes with another entry of the same name`);
  return err as Error;
}
