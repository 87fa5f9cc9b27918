import { relative, sep } from 'node:path';
import yauzl from 'yauzl';
import type { Entry } from 'yauzl';
import { describeError, isServiceError } from '../errors.js';
import { entryTarget, ExtractionBudget, refuseArchive, writeEntryDirectory, writeEntryFile } from './archiveEntries.js';
import type { ArchiveLabel, EntryKind } from './archiveEntries.js';

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const MADE_BY_UNIX = 3;
const DOS_DIRECTORY = 0x10;

/**
 * Extracts a zip archive into `dest` (an empty directory), entry by entry, returning the paths of
 * the files written relative to `dest`. Throws ServiceError: VALIDATION_ERROR for unsafe or
 * unreadable archives, PAYLOAD_TOO_LARGE past the budget. On a throw, `dest` holds a partial
 * extraction for the caller to remove.
 */
export async function extractZip(archivePath: string, dest: string, budget: ExtractionBudget, label: ArchiveLabel): Promise<string[]> {
  let zip: yauzl.ZipFile;
  try {
    // Names are decoded here, not by yauzl, so that an unsafe name gets this module's message.
    zip = await yauzl.openPromise(archivePath, { lazyEntries: true, decodeStrings: false, autoClose: false });
  } catch (err) {
    throw refuseArchive(label, `it is not a readable zip archive (${describeError(err)})`);
  }
  const files: string[] = [];
  try {
    for await (const entry of zip.eachEntry()) {
      budget.countEntry();
      const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, false);
      const kind = kindOf(entry, name);
      const target = entryTarget(dest, name, kind, label);
      if (!target) continue;
      if (kind === 'directory') {
        await writeEntryDirectory(target, name, label);
        continue;
      }
      if (entry.isEncrypted()) throw refuseArchive(label, `entry ${JSON.stringify(name)} is encrypted`);
      await writeEntryFile(target, name, () => zip.openReadStreamPromise(entry), budget, (modeOf(entry) & 0o111) !== 0, label);
      files.push(relative(dest, target).split(sep).join('/'));
    }
  } catch (err) {
    if (isServiceError(err)) throw err;
    throw refuseArchive(label, `it is not a readable zip archive (${describeError(err)})`);
  } finally {
    zip.close();
  }
  return files;
}

function modeOf(entry: Entry): number {
  return entry.versionMadeBy >> 8 === MADE_BY_UNIX ? entry.externalFileAttributes >>> 16 : 0;
}

function kindOf(entry: Entry, name: string): EntryKind {
  const type = modeOf(entry) & S_IFMT;
  if (type === S_IFLNK) return 'link';
  if (type === S_IFDIR || name.endsWith('/') || (entry.externalFileAttributes & DOS_DIRECTORY) !== 0) return 'directory';
  if (type === 0 || type === S_IFREG) return 'file';
  return 'special';
}
