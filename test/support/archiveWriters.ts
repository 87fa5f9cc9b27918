import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import * as tar from 'tar';

/** One entry of a zip the test builds. */
export interface ZipEntry {
  name: string;
  /** File content (a symlink's target for `symlink`). */
  content?: string | Buffer;
  /** Unix file type and permissions; default 0o100644 for files, 0o040755 for names ending in "/". */
  mode?: number;
  /** A symlink to `content`. */
  symlink?: boolean;
  /** Stored (no compression) instead of deflated. */
  stored?: boolean;
  /** The uncompressed size to write in the headers instead of the real one (a lying header). */
  declaredSize?: number;
}

const S_IFLNK = 0o120000;

/**
 * A zip archive in memory, made the way Info-ZIP makes them on Unix (version made by 3, the mode in
 * the upper half of the external attributes, UTF-8 names). Enough for tests; no zip64.
 */
export function zipBuffer(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const data = Buffer.from(entry.content ?? '');
    const directory = entry.name.endsWith('/');
    const mode = entry.mode ?? (entry.symlink ? S_IFLNK | 0o777 : directory ? 0o040755 : 0o100644);
    const stored = entry.stored || entry.symlink || directory;
    const body = stored ? data : deflateRawSync(data);
    const size = entry.declaredSize ?? data.length;
    const checksum = crc32(data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x800, 6);
    local.writeUInt16LE(stored ? 0 : 8, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(checksum, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, name, body);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x800, 8);
    central.writeUInt16LE(stored ? 0 : 8, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(checksum, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((mode * 0x10000 + (directory ? 0x10 : 0)) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + body.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

/** One entry of a tar the test builds: any header, including ones tar's own packer would refuse to write. */
export interface TarEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'FIFO' | 'CharacterDevice';
  content?: string | Buffer;
  linkpath?: string;
  mode?: number;
}

/** A tar archive in memory (ustar headers written by tar's Header class), gzipped when asked. */
export function tarBuffer(entries: TarEntry[], options: { gzip?: boolean } = {}): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.content ?? '');
    const type = entry.type ?? (entry.path.endsWith('/') ? 'Directory' : 'File');
    const header = new tar.Header({ path: entry.path, type, size: type === 'File' ? data.length : 0, mode: entry.mode ?? (type === 'Directory' ? 0o755 : 0o644), mtime: new Date(0), uid: 0, gid: 0, linkpath: entry.linkpath });
    header.encode();
    blocks.push(header.block!);
    if (type === 'File' && data.length) blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  const archive = Buffer.concat(blocks);
  return options.gzip ? gzipSync(archive) : archive;
}
