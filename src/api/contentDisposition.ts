/**
 * `Content-Disposition: attachment` for a file name (RFC 6266): `filename="…"` with an ASCII
 * fallback in which anything outside printable ASCII, and `"`, `\` and `%`, become `_` (some
 * clients unescape or percent-decode it), plus `filename*=UTF-8''…` with the exact name
 * (RFC 8187) whenever the fallback differs.
 */
export function attachmentDisposition(fileName: string): string {
  const fallback = fileName.replace(/[^\x20-\x7e]|["\\%]/gu, '_');
  if (fallback === fileName) return `attachment; filename="${fallback}"`;
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encodeRfc8187(fileName)}`;
}

// encodeURIComponent leaves ' ( ) * ! unencoded; RFC 8187's attr-char does not allow the first four.
function encodeRfc8187(value: string): string {
  return encodeURIComponent(value).replace(/['()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
}
