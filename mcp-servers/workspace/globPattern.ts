import { Minimatch, type MinimatchOptions } from 'minimatch';

import { ToolFailure } from './toolResults.js';

/** Most patterns the `{a,b}` groups of one glob may expand to; every path is tested against each. */
export const MAX_GLOB_ALTERNATIVES = 100;

/**
 * minimatch (11) with the syntax the tools document: `*`, `**`, `?`, `{a,b}` (and `{1..9}`),
 * `[abc]`, `[a-z]`, `[!abc]`, `[[:digit:]]` and `\x`. Dot files match like any other; a leading
 * `!` or `#` and extglobs such as `+(a|b)` are plain characters. minimatch matches each path
 * segment without recursive backtracking, so no pattern costs more than linear work per path
 * (the hand-written compiler before it took 35 s for `*a*a*a*a*a*a*a*a*a*ab` on one name).
 */
const OPTIONS: MinimatchOptions = {
  dot: true,
  noext: true,
  nocomment: true,
  nonegate: true,
  braceExpandMax: MAX_GLOB_ALTERNATIVES + 1,
};

/** Whether a workspace path (`/`-separated, relative) matches. */
export type GlobMatcher = (relative: string) => boolean;

/** Compiles a glob; a pattern minimatch refuses or that expands too far is a ToolFailure saying why. */
export function compileGlob(pattern: string): GlobMatcher {
  const normalised = pattern.replace(/^(?:\.\/)+/, '').replace(/\/+/g, '/');
  let matcher: Minimatch;
  try {
    matcher = new Minimatch(normalised, OPTIONS);
  } catch (error) {
    throw new ToolFailure(`Invalid glob pattern ${JSON.stringify(pattern)}: ${(error as Error).message}.`);
  }
  if (matcher.set.length > MAX_GLOB_ALTERNATIVES) {
    throw new ToolFailure(
      `Glob pattern ${JSON.stringify(pattern)} expands to more than ${MAX_GLOB_ALTERNATIVES} patterns through its {…} groups; use fewer alternatives.`,
    );
  }
  return (relative) => matcher.match(relative);
}
