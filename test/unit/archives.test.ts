import { expect } from 'chai';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ArchiveLimits } from '../../src/config.js';
import { ServiceError } from '../../src/errors.js';
import { ExtractionBudget } from '../../src/sandbox/archiveEntries.js';
import { extractTar } from '../../src/sandbox/tarArchive.js';
import { extractZip } from '../../src/sandbox/zipArchive.js';
import { tarBuffer, zipBuffer } from '../support/archiveWriters.js';
import type { TarEntry, ZipEntry } from '../support/archiveWriters.js';
import { rejection } from '../support/harness.js';

const LIMITS: ArchiveLimits = { maxExpandedBytes: 10 * 1024 * 1024, maxEntries: 100, maxCompressionRatio: 100 };

describe('archive extraction', () => {
  let dir: string;
  let dest: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'airlock-archives-'));
    dest = join(dir, 'out');
    await mkdir(dest);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function zip(entries: ZipEntry[], limits: ArchiveLimits = LIMITS): Promise<string[]> {
    const archive = join(dir, 'test.zip');
    const bytes = zipBuffer(entries);
    await writeFile(archive, bytes);
    const label = { name: 'test.zip', pointer: '/files/0' };
    return extractZip(archive, dest, new ExtractionBudget(limits, bytes.length, label), label);
  }

  async function tarball(entries: TarEntry[], options: { gzip?: boolean; limits?: ArchiveLimits; bytes?: Buffer } = {}): Promise<string[]> {
    const archive = join(dir, 'test.tar.gz');
    const bytes = options.bytes ?? tarBuffer(entries, { gzip: options.gzip });
    await writeFile(archive, bytes);
    const label = { name: 'test.tar.gz', pointer: '/files/0' };
    return extractTar(archive, dest, new ExtractionBudget(options.limits ?? LIMITS, bytes.length, label), label);
  }

  async function refusal(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<ServiceError> {
    const err = await rejection(promise);
    expect(err).to.be.instanceOf(ServiceError);
    expect((err as ServiceError).code, (err as Error).message).to.equal(code);
    expect((err as ServiceError).message).to.match(pattern);
    expect((err as ServiceError).details).to.deep.equal([{ path: '/files/0', message: (err as ServiceError & { details: { message: string }[] }).details[0]!.message }]);
    return err as ServiceError;
  }

  /** Every path under dir, to prove nothing landed outside `dest`. */
  async function everything(): Promise<string[]> {
    return (await readdir(dir, { recursive: true })).map(String).sort();
  }

  describe('extractZip', () => {
    it('extracts nested directories and files with their content, and reports the files', async () => {
      const files = await zip([
        { name: 'data/' },
        { name: 'data/2024/' },
        { name: 'data/2024/sales.csv', content: 'a,b\n1,2\n' },
        { name: 'readme.txt', content: 'hello '.repeat(100), stored: true },
        { name: 'bin/run.sh', content: '#!/bin/sh\necho hi\n', mode: 0o100755 },
        { name: 'naïve café.txt', content: 'ü' },
      ]);
      expect(files).to.deep.equal(['data/2024/sales.csv', 'readme.txt', 'bin/run.sh', 'naïve café.txt']);
      expect(await readFile(join(dest, 'data/2024/sales.csv'), 'utf8')).to.equal('a,b\n1,2\n');
      expect(await readFile(join(dest, 'readme.txt'), 'utf8')).to.equal('hello '.repeat(100));
      expect(await readFile(join(dest, 'naïve café.txt'), 'utf8')).to.equal('ü');
      expect((await stat(join(dest, 'bin/run.sh'))).mode & 0o111).to.not.equal(0);
      expect((await stat(join(dest, 'readme.txt'))).mode & 0o111).to.equal(0);
    });

    it('refuses an entry that climbs out with ".." (zip slip) and writes nothing outside', async () => {
      await refusal(zip([{ name: 'ok.txt', content: 'fine' }, { name: 'a/../../evil.txt', content: 'pwned' }]), 'VALIDATION_ERROR', /Archive "test\.zip" was refused: entry "a\/\.\.\/\.\.\/evil\.txt" climbs out of the archive with "\.\."/);
      expect(await everything()).to.not.include('evil.txt');
    });

    it('refuses absolute paths, also with a drive letter', async () => {
      await refusal(zip([{ name: '/etc/cron.d/evil', content: 'x' }]), 'VALIDATION_ERROR', /entry "\/etc\/cron\.d\/evil" has an absolute path/);
      await refusal(zip([{ name: 'C:/Windows/evil', content: 'x' }]), 'VALIDATION_ERROR', /has an absolute path/);
    });

    it('refuses a symlink entry, wherever it points', async () => {
      await refusal(zip([{ name: 'escape', content: '/etc/passwd', symlink: true }]), 'VALIDATION_ERROR', /entry "escape" is a link/);
      await rm(dest, { recursive: true });
      await mkdir(dest);
      await refusal(zip([{ name: 'inside', content: 'other.txt', symlink: true }]), 'VALIDATION_ERROR', /is a link/);
    });

    it('refuses device files and FIFOs', async () => {
      await refusal(zip([{ name: 'pipe', mode: 0o010644 }]), 'VALIDATION_ERROR', /entry "pipe" is a device file, FIFO or socket/);
    });

    it('refuses a zip bomb by the bytes it actually expands to: ratio, total size and entry count', async () => {
      const zeros = Buffer.alloc(3 * 1024 * 1024);
      await refusal(zip([{ name: 'zeros.bin', content: zeros }]), 'PAYLOAD_TOO_LARGE', /Archive "test\.zip" expands to more than 100 times its own size/);
      expect((await stat(join(dest, 'zeros.bin'))).size, 'stopped early').to.be.below(zeros.length);
      await rm(dest, { recursive: true });
      await mkdir(dest);
      await refusal(zip([{ name: 'a.txt', content: 'x'.repeat(600) }, { name: 'b.txt', content: 'y'.repeat(600) }], { ...LIMITS, maxExpandedBytes: 1000 }), 'PAYLOAD_TOO_LARGE', /expands to more than 1000 bytes/);
      await rm(dest, { recursive: true });
      await mkdir(dest);
      await refusal(zip([{ name: 'a/' }, { name: 'a/1' }, { name: 'a/2' }], { ...LIMITS, maxEntries: 2 }), 'PAYLOAD_TOO_LARGE', /has more than 2 entries/);
    });

    it('refuses an entry whose data is longer than its header says', async () => {
      await refusal(zip([{ name: 'liar.bin', content: Buffer.alloc(3 * 1024 * 1024), declaredSize: 10 }]), 'VALIDATION_ERROR', /it is not a readable zip archive \(too many bytes in the stream/);
    });

    it('keeps small archives of repetitive text under the ratio grace', async () => {
      expect(await zip([{ name: 'zeros.csv', content: '0,'.repeat(100_000) }])).to.deep.equal(['zeros.csv']);
    });

    it('refuses an entry named twice, and a file that is not a zip', async () => {
      await refusal(zip([{ name: 'a.txt', content: '1' }, { name: 'a.txt', content: '2' }]), 'VALIDATION_ERROR', /entry "a\.txt" clashes with another entry/);
      await writeFile(join(dir, 'test.zip'), 'not a zip at all');
      const label = { name: 'test.zip', pointer: '/files/0' };
      await refusal(extractZip(join(dir, 'test.zip'), dest, new ExtractionBudget(LIMITS, 16, label), label), 'VALIDATION_ERROR', /it is not a readable zip archive/);
    });

    it('replaces control characters in entry names', async () => {
      expect(await zip([{ name: 'bad\u0007name\u202e.txt', content: 'x' }])).to.deep.equal(['bad_name_.txt']);
    });
  });

  describe('extractTar', () => {
    it('extracts a .tar.gz with nested directories', async () => {
      const files = await tarball([{ path: 'report/' }, { path: 'report/q1/data.csv', content: 'x,y\n' }, { path: 'notes.md', content: '# hi' }], { gzip: true });
      expect(files).to.deep.equal(['report/q1/data.csv', 'notes.md']);
      expect(await readFile(join(dest, 'report/q1/data.csv'), 'utf8')).to.equal('x,y\n');
    });

    it('extracts a plain .tar', async () => {
      expect(await tarball([{ path: 'a.txt', content: 'plain' }])).to.deep.equal(['a.txt']);
    });

    it('refuses ".." and absolute entries and writes nothing outside', async () => {
      await refusal(tarball([{ path: 'fine.txt', content: 'ok' }, { path: '../evil.txt', content: 'pwned' }], { gzip: true }), 'VALIDATION_ERROR', /entry "\.\.\/evil\.txt" climbs out of the archive/);
      expect(await everything()).to.not.include('evil.txt');
      await refusal(tarball([{ path: '/tmp/evil.txt', content: 'x' }]), 'VALIDATION_ERROR', /has an absolute path/);
    });

    it('refuses symlinks, hard links and FIFOs', async () => {
      await refusal(tarball([{ path: 'l', type: 'SymbolicLink', linkpath: '/etc' }]), 'VALIDATION_ERROR', /entry "l" is a link/);
      await refusal(tarball([{ path: 'h', type: 'Link', linkpath: 'a.txt' }]), 'VALIDATION_ERROR', /entry "h" is a link/);
      await refusal(tarball([{ path: 'p', type: 'FIFO' }]), 'VALIDATION_ERROR', /is a device file, FIFO or socket/);
    });

    it('refuses a gzip bomb by the bytes it expands to', async () => {
      await refusal(tarball([{ path: 'zeros.bin', content: Buffer.alloc(3 * 1024 * 1024) }], { gzip: true }), 'PAYLOAD_TOO_LARGE', /expands to more than 100 times its own size/);
    });

    it('refuses a truncated or corrupt archive without hanging', async () => {
      const whole = tarBuffer([{ path: 'big.txt', content: 'z'.repeat(100_000) }], { gzip: true });
      await refusal(tarball([], { bytes: whole.subarray(0, Math.floor(whole.length / 2)) }), 'VALIDATION_ERROR', /it is not a readable tar archive/);
      await rm(dest, { recursive: true });
      await mkdir(dest);
      await refusal(tarball([], { bytes: Buffer.from('definitely not a tar archive '.repeat(40)) }), 'VALIDATION_ERROR', /not a readable tar archive/);
    });
  });
});
