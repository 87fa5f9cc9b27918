import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';

/**
 * Writes one uploaded file to disk as it streams in, and fails with `tooLarge()` as soon as more
 * than `limitBytes` arrive: the limit is counted while streaming, nothing is held in memory.
 */
export class LimitedFileWriter extends Writable {
  /** Bytes written so far. */
  bytes = 0;
  private handle: FileHandle | undefined;

  constructor(private readonly path: string, private readonly limitBytes: number, private readonly tooLarge: () => Error) {
    super();
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.path, 'wx', 0o644).then((handle) => {
      this.handle = handle;
      callback();
    }, callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limitBytes) return callback(this.tooLarge());
    this.handle!.write(chunk).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = undefined;
    handle!.close().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const handle = this.handle;
    this.handle = undefined;
    if (!handle) return callback(error);
    handle.close().then(() => callback(error), () => callback(error));
  }
}

/** A Writable that fails at once with `error` and writes nothing. */
export function failingWriter(error: Error): Writable {
  return new Writable({ construct: (callback) => callback(error) });
}

/** A Writable that drops everything: for parts that arrive after a request was given up. */
export function discardingWriter(): Writable {
  return new Writable({ write: (_chunk, _encoding, callback) => callback() });
}
