import { extname } from 'node:path';

/** Longest name, in UTF-8 bytes, a saved file gets: room below the usual 255 for a " (n)" suffix. */
const MAX_NAME_BYTES = 200;
/** Compound extensions kept whole when a name is numbered or shortened. */
const COMPOUND_EXTENSIONS = ['.tar.gz', '.tar.bz2', '.tar.xz', '.tar.zst'];
// C0 and C1 controls, DEL, and the bidirectional overrides that make "invoice‮fdp.exe" read as a PDF.
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
// Device names Windows will not create, with or without an extension: an archive download must unpack there too.
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;

/**
 * A file name that is safe to create in a directory, from a name a client or an archive chose:
 * only its last path component survives (`/` and `\` both separate), control and bidi-override
 * characters become `_`, leading and trailing spaces and trailing dots go, Windows device names
 * get a `_` prefix, and the result is at most 200 UTF-8 bytes (the extension kept). An empty name,
 * `.` or `..` becomes `fallback`.
 */
export function safeFileName(raw: string, fallback = 'file'): string {
  return safeComponent(raw.split(/[/\\]/).at(-1) ?? '', fallback);
}

/** safeFileName for one component of a path that was split already: `/` and `\` become `_`. */
export function safeComponent(raw: string, fallback = 'file'): string {
  let name = raw.normalize('NFC').replace(UNSAFE_CHARACTERS, '_').replace(/[/\\]/g, '_').trim().replace(/[. ]+$/, '');
  if (name === '' || name === '.' || name === '..') return fallback;
  if (WINDOWS_DEVICE.test(name)) name = `_${name}`;
  return shorten(name);
}

/** The extension of a name, compound ones (`.tar.gz`) included; `''` for dot-files and names without one. */
export function extensionOf(name: string): string {
  const lower = name.toLowerCase();
  const compound = COMPOUND_EXTENSIONS.find((ext) => lower.endsWith(ext) && lower.length > ext.length);
  return compound ? name.slice(-compound.length) : extname(name);
}

/** `report.csv` → `report (n).csv`; n = 0 leaves the name as it is. */
export function numberedName(name: string, n: number): string {
  if (n === 0) return name;
  const ext = extensionOf(name);
  return `${name.slice(0, name.length - ext.length)} (${n})${ext}`;
}

function shorten(name: string): string {
  if (Buffer.byteLength(name) <= MAX_NAME_BYTES) return name;
  const ext = extensionOf(name);
  const keep = Buffer.byteLength(ext) <= 20 ? ext : '';
  // Whole code points only, so that a multi-byte character is never cut in half.
  let stem = '';
  let bytes = Buffer.byteLength(keep);
  for (const char of name.slice(0, name.length - keep.length)) {
    bytes += Buffer.byteLength(char);
    if (bytes > MAX_NAME_BYTES) break;
    stem += char;
  }
  return `${stem}${keep}`;
}
