import { cp, lstat, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { once } from 'node:events';
import type { UploadLimits } from '../config.js';
import { ServiceError } from '../errors.js';
import type { AttachedFile } from '../store/store.js';
import { workspaceBytes } from './artifacts.js';
import { ExtractionBudget } from './archiveEntries.js';
import { extensionOf, numberedName, safeFileName } from './safeNames.js';
import { extractTar } from './tarArchive.js';
import { discardingWriter, failingWriter, LimitedFileWriter } from './uploadWriters.js';
import { extractZip } from './zipArchive.js';

/** Highest " (n)" suffix tried before a name counts as taken for good. */
const MAX_NUMBERED = 10_000;

/** Where uploads wait while a request is parsed and checked: temp directories under the data dir. */
export class Uploads {
  constructor(private readonly tmpRoot: string, readonly limits: UploadLimits) {}

  /** Removes what a previous process left behind (it cannot have a request in flight) and makes the root. */
  async init(): Promise<void> {
    await rm(this.tmpRoot, { recursive: true, force: true });
    await mkdir(this.tmpRoot, { recursive: true });
  }

  /** A receiver for one request, with its own temp directory. */
  async receive(): Promise<UploadReceiver> {
    await mkdir(this.tmpRoot, { recursive: true });
    return new UploadReceiver(await mkdtemp(join(this.tmpRoot, 'upload-')), this.limits);
  }
}

interface ReceivedFile {
  index: number;
  clientName: string;
  path: string;
  writer: LimitedFileWriter;
}

/**
 * The files of one request, from their first byte until they are moved into a workspace or thrown
 * away. Everything lives in one temp directory, so `discard()` leaves nothing behind, whatever
 * stage the request failed at.
 */
export class UploadReceiver {
  private readonly files: ReceivedFile[] = [];
  private readonly writers: Writable[] = [];
  private closed = false;
  private failure: Error | undefined;

  constructor(readonly dir: string, private readonly limits: UploadLimits) {}

  /** How many file parts the request has opened so far. */
  get fileCount(): number {
    return this.files.length;
  }

  /**
   * The writer for the next file part, in the order of the request. It fails (and with it the
   * request) past maxFileBytes, or when the part is one file too many.
   */
  openFile(clientName: string): Writable {
    if (this.closed) return discardingWriter();
    const index = this.files.length;
    const shown = safeFileName(clientName);
    let writer: Writable;
    if (index >= this.limits.maxFiles) {
      writer = failingWriter(this.refuse(new ServiceError('VALIDATION_ERROR', `Too many files: at most ${this.limits.maxFiles} per request`, { details: [{ path: '/files', message: `at most ${this.limits.maxFiles} files` }] })));
    } else {
      const path = join(this.dir, `part-${index}`);
      const file = new LimitedFileWriter(path, this.limits.maxFileBytes, () => this.refuse(new ServiceError('PAYLOAD_TOO_LARGE', `File "${shown}" is larger than ${this.limits.maxFileBytes} bytes, the most one upload may be; nothing was saved`, { details: [{ path: `/files/${index}`, message: `larger than ${this.limits.maxFileBytes} bytes` }] })));
      this.files.push({ index, clientName, path, writer: file });
      writer = file;
    }
    this.writers.push(writer);
    return writer;
  }

  /**
   * The first limit a file broke (too large, one too many), if any: the request must fail with it.
   * Known as soon as the limit is passed, before the writer's error event, which may reach the
   * parser only after it has finished the request.
   */
  get refusal(): Error | undefined {
    return this.failure;
  }

  private refuse(err: ServiceError): ServiceError {
    this.failure ??= err;
    return err;
  }

  /**
   * Names the received files safely and extracts their archives, each into a directory of its own
   * in the temp directory. Undefined when the request had no files.
   */
  async stage(): Promise<StagedUploads | undefined> {
    if (!this.files.length) return undefined;
    const items: StagedItem[] = [];
    for (const file of this.files) {
      const name = safeFileName(file.clientName);
      const item: StagedItem = { name, path: file.path };
      const kind = archiveKind(name);
      if (kind) {
        const label = { name, pointer: `/files/${file.index}` };
        const dir = join(this.dir, `extracted-${file.index}`);
        await mkdir(dir);
        const budget = new ExtractionBudget(this.limits.archives, file.writer.bytes, label);
        const files = kind === 'zip' ? await extractZip(file.path, dir, budget, label) : await extractTar(file.path, dir, budget, label);
        item.extracted = { dir, stem: name.slice(0, name.length - extensionOf(name).length) || 'archive', files };
      }
      items.push(item);
    }
    return new StagedUploads(items, await workspaceBytes(this.dir));
  }

  /** Stops taking parts, waits for every file writer to close, and removes the temp directory. */
  async discard(): Promise<void> {
    this.closed = true;
    await Promise.all(this.writers.map(async (writer) => {
      if (writer.closed) return;
      const closed = once(writer, 'close').catch(() => undefined);
      writer.destroy();
      await closed;
    }));
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** An archive kind Airlock extracts, from the file's name. */
export function archiveKind(name: string): 'zip' | 'tar' | undefined {
  const lower = name.toLowerCase();
  if (lower.endsWith('.zip')) return 'zip';
  if (lower.endsWith('.tar') || lower.endsWith('.tar.gz') || lower.endsWith('.tgz')) return 'tar';
  return undefined;
}

interface StagedItem {
  /** The safe name, before any " (n)" suffix. */
  name: string;
  path: string;
  /** For an archive: where its entries were extracted, the directory name they get, and their paths. */
  extracted?: { dir: string; stem: string; files: string[] };
}

/** Uploads moved into a workspace: what the user message records, and how to take them back out. */
export interface AdoptedUploads {
  attachedFiles: AttachedFile[];
  /** Removes what was moved in (a follow-up that lost a race takes its files back). */
  undo(): Promise<void>;
}

/** Checked uploads, ready to move into a workspace. */
export class StagedUploads {
  constructor(
    private readonly items: StagedItem[],
    /** What moving them in adds to a workspace: the files and the archives' contents, in bytes. */
    readonly bytes: number,
  ) {}

  /**
   * Moves every file, and every archive's directory, into `targetDir` (shown to the agent as
   * `<prefix>/…`). A name already taken there gets the first free " (n)" suffix; an archive and its
   * directory get the same one (`data (1).zip`, `data (1)/`). All or nothing: a failure removes
   * what was moved so far.
   */
  async moveInto(targetDir: string, prefix: string): Promise<AdoptedUploads> {
    await mkdir(targetDir, { recursive: true });
    const moved: string[] = [];
    const undo = () => Promise.all(moved.map((name) => rm(join(targetDir, name), { recursive: true, force: true }))).then(() => undefined);
    const attachedFiles: AttachedFile[] = [];
    try {
      for (const item of this.items) {
        const n = await freeNumber(targetDir, item);
        const fileName = numberedName(item.name, n);
        await move(item.path, join(targetDir, fileName));
        moved.push(fileName);
        attachedFiles.push({ name: item.name, path: `${prefix}/${fileName}` });
        if (!item.extracted) continue;
        const dirName = directoryName(item.extracted.stem, n);
        await move(item.extracted.dir, join(targetDir, dirName));
        moved.push(dirName);
        for (const file of item.extracted.files) attachedFiles.push({ name: file.split('/').at(-1)!, path: `${prefix}/${dirName}/${file}` });
      }
    } catch (err) {
      await undo();
      throw err;
    }
    return { attachedFiles, undo };
  }
}

/** Renames, or copies then deletes when the target is on another filesystem (a workspace volume). */
async function move(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    try {
      await cp(from, to, { recursive: true, errorOnExist: true, force: false, verbatimSymlinks: true });
    } catch (copyErr) {
      await rm(to, { recursive: true, force: true });
      throw copyErr;
    }
    await rm(from, { recursive: true, force: true });
  }
}

function directoryName(stem: string, n: number): string {
  return n === 0 ? stem : `${stem} (${n})`;
}

async function freeNumber(dir: string, item: StagedItem): Promise<number> {
  for (let n = 0; n <= MAX_NUMBERED; n++) {
    const names = [numberedName(item.name, n), ...(item.extracted ? [directoryName(item.extracted.stem, n)] : [])];
    if (!(await Promise.all(names.map((name) => exists(join(dir, name))))).some(Boolean)) return n;
  }
  throw new ServiceError('CONFLICT', `The workspace already holds ${MAX_NUMBERED} files named like "${item.name}"`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
