import { createReadStream } from 'node:fs';
import { relative, sep } from 'node:path';
import { PassThrough } from 'node:stream';
import * as tar from 'tar';
import { describeError, isServiceError } from '../errors.js';
import { entryTarget, ExtractionBudget, refuseArchive, writeEntryDirectory, writeEntryFile } from './archiveEntries.js';
import type { ArchiveLabel, EntryKind } from './archiveEntries.js';

const KINDS: Partial<Record<tar.ReadEntry['type'], EntryKind>> = {
  File: 'file',
  OldFile: 'file',
  ContiguousFile: 'file',
  Directory: 'directory',
  GNUDumpDir: 'directory',
  Link: 'link',
  SymbolicLink: 'link',
  CharacterDevice: 'special',
  BlockDevice: 'special',
  FIFO: 'special',
};

/**
 * Extracts a tar archive, plain or gzip-compressed (detected from its bytes), into `dest` (an
 * empty directory), returning the paths of the files written relative to `dest`. Entries are
 * written one at a time, with backpressure, and every content byte is counted. Throws like
 * extractZip; on a throw, `dest` holds a partial extraction for the caller to remove.
 */
export function extractTar(archivePath: string, dest: string, budget: ExtractionBudget, label: ArchiveLabel): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const files: string[] = [];
    const source = createReadStream(archivePath);
    // Strict: a corrupt header or a truncated archive is an error, not a warning. The ratio is
    // checked by the budget (with a grace size), so tar's own running check is off.
    const parser = new tar.Parser({ strict: true, maxDecompressionRatio: Number.POSITIVE_INFINITY });
    let failure: unknown;
    let current: PassThrough | undefined;
    let work: Promise<void> = Promise.resolve();

    const fail = (err: unknown) => {
      if (failure !== undefined) return;
      failure = err;
      source.destroy();
      current?.destroy(err as Error);
      if (!isServiceError(err)) err = refuseArchive(label, `it is not a readable tar archive (${describeError(err)})`);
      void work.then(() => reject(err));
    };

    parser.on('entry', (entry: tar.ReadEntry) => {
      // Entries come one at a time: the parser waits for this one's end before it reads the next.
      const body = new PassThrough();
      // Errors reach the reader through its iteration; without a listener a late one would be thrown.
      body.on('error', () => {});
      entry.pipe(body);
      current = body;
      work = work.then(async () => {
        if (failure !== undefined) return void body.resume();
        try {
          const kind = KINDS[entry.type] ?? 'unsupported';
          budget.countEntry();
          const target = entryTarget(dest, entry.path, kind, label);
          if (target && kind === 'directory') await writeEntryDirectory(target, entry.path, label);
          if (target && kind === 'file') {
            await writeEntryFile(target, entry.path, async () => body, budget, ((entry.mode ?? 0) & 0o111) !== 0, label);
            files.push(relative(dest, target).split(sep).join('/'));
          }
          body.resume();
        } catch (err) {
          fail(err);
        }
      });
    });
    parser.on('error', fail);
    source.on('error', fail);
    parser.on('end', () => void work.then(() => failure === undefined && resolve(files)));
    source.pipe(parser);
  });
}
