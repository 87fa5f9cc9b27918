/**
 * A small glob matcher for workspace paths (`/`-separated, relative). Supported syntax:
 * `*` (any run of characters within one path segment), `**` as a whole segment (zero or more
 * segments), `?` (one character, not `/`), `{a,b}` (alternatives, nestable), `[abc]`, `[a-z]`,
 * `[!abc]` (character classes) and `\x` (a literal character). Dot files match like any other.
 * Node 20 has no stable fs.glob, and this avoids a dependency for a few dozen lines.
 */
export function globToRegExp(pattern: string): RegExp {
  const normalised = pattern.replace(/^\.\//, '').replace(/\/+/g, '/');
  return new RegExp(`^${compile(normalised, 0, false).source}$`);
}

interface Compiled {
  /** The regular-expression source for the part compiled. */
  source: string;
  /** Index just past the part compiled. */
  end: number;
}

/** Compiles from `start` to the end, or (inside braces) to the closing `,` / `}` at this depth. */
function compile(pattern: string, start: number, inBraces: boolean): Compiled {
  let source = '';
  let i = start;
  while (i < pattern.length) {
    const char = pattern[i]!;
    if (inBraces && (char === ',' || char === '}')) return { source, end: i };
    switch (char) {
      case '\\': {
        const next = pattern[i + 1];
        source += escapeRegExp(next ?? '\\');
        i += next === undefined ? 1 : 2;
        break;
      }
      case '*': {
        if (pattern[i + 1] === '*' && isSegmentStart(pattern, i) && isSegmentEnd(pattern, i + 2)) {
          if (pattern[i + 2] === '/') {
            source += '(?:[^/]*/)*';
            i += 3;
          } else {
            source += '.*';
            i += 2;
          }
        } else {
          source += '[^/]*';
          while (pattern[i] === '*') i += 1;
        }
        break;
      }
      case '?':
        source += '[^/]';
        i += 1;
        break;
      case '[': {
        const charClass = compileClass(pattern, i);
        source += charClass.source;
        i = charClass.end;
        break;
      }
      case '{': {
        const close = findBraceClose(pattern, i);
        if (close === -1) {
          source += '\\{';
          i += 1;
          break;
        }
        const alternatives: string[] = [];
        let cursor = i + 1;
        for (;;) {
          const part = compile(pattern, cursor, true);
          alternatives.push(part.source);
          cursor = part.end + 1;
          if (pattern[part.end] === '}') break;
        }
        source += `(?:${alternatives.join('|')})`;
        i = cursor;
        break;
      }
      default:
        source += escapeRegExp(char);
        i += 1;
    }
  }
  return { source, end: i };
}

function isSegmentStart(pattern: string, index: number): boolean {
  return index === 0 || pattern[index - 1] === '/' || pattern[index - 1] === '{' || pattern[index - 1] === ',';
}

function isSegmentEnd(pattern: string, index: number): boolean {
  const next = pattern[index];
  return next === undefined || next === '/' || next === '}' || next === ',';
}

/** Index of the `}` closing the `{` at `open`, or -1 when it is unbalanced or has no `,`. */
function findBraceClose(pattern: string, open: number): number {
  let depth = 0;
  let sawComma = false;
  for (let i = open; i < pattern.length; i += 1) {
    const char = pattern[i];
    if (char === '\\') i += 1;
    else if (char === '{') depth += 1;
    else if (char === ',' && depth === 1) sawComma = true;
    else if (char === '}') {
      depth -= 1;
      if (depth === 0) return sawComma ? i : -1;
    }
  }
  return -1;
}

function compileClass(pattern: string, open: number): Compiled {
  let i = open + 1;
  let negated = false;
  if (pattern[i] === '!' || pattern[i] === '^') {
    negated = true;
    i += 1;
  }
  let body = '';
  let first = true;
  while (i < pattern.length && (pattern[i] !== ']' || first)) {
    const char = pattern[i]!;
    if (char === '/') break;
    if (char === '-' && !first && pattern[i + 1] !== ']') body += '-';
    else body += char === '\\' || char === ']' || char === '[' || char === '^' || char === '-' ? `\\${char}` : char;
    first = false;
    i += 1;
  }
  if (pattern[i] !== ']' || body === '') return { source: '\\[', end: open + 1 };
  return { source: negated ? `[^/${body}]` : `[${body}]`, end: i + 1 };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
